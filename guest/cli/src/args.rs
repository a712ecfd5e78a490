//! The command line: `PROMPT [--max-tokens N] [--temperature T] [--seed S] [--chat]
//! [--model NAME|PATH] [--json]`.

use std::str::FromStr;

/// The model opened when `--model` is not given.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Shown for `--help`.
pub const USAGE: &str = "usage: edge-llm-cli PROMPT [--max-tokens N] [--temperature T] [--seed S] \
[--chat] [--model NAME|PATH] [--json]";

/// A parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    /// The prompt (raw, or the user message with `--chat`).
    pub prompt: String,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Sampler seed.
    pub seed: u64,
    /// Wrap the prompt in the model's chat template.
    pub chat: bool,
    /// Model name or path inside the sandbox.
    pub model: String,
    /// Print one JSON object instead of the text stream.
    pub json: bool,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Generate.
    Run(Args),
    /// Print the usage.
    Help,
}

/// A malformed command line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgsError {
    /// An option we do not know.
    #[error("unknown option `{0}` ({USAGE})")]
    UnknownOption(String),
    /// An option given without its value.
    #[error("option `{0}` needs a value")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("invalid value `{value}` for `{option}`: {why}")]
    InvalidValue {
        /// The option.
        option: String,
        /// What was given.
        value: String,
        /// Why it was rejected.
        why: String,
    },
    /// No prompt.
    #[error("missing PROMPT ({USAGE})")]
    MissingPrompt,
    /// More than one positional argument.
    #[error("unexpected argument `{0}`: give the prompt as one (quoted) argument")]
    ExtraArgument(String),
}

fn value<T: FromStr>(option: &str, value: Option<String>) -> Result<T, ArgsError>
where
    T::Err: std::fmt::Display,
{
    let value = value.ok_or_else(|| ArgsError::MissingValue(option.to_string()))?;
    value.parse().map_err(|e: T::Err| ArgsError::InvalidValue {
        option: option.to_string(),
        value: value.clone(),
        why: e.to_string(),
    })
}

/// Parses the arguments after the program name. `--opt=value` and `--opt value` both work;
/// `--` ends the options.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, ArgsError> {
    let mut args = args.into_iter();
    let mut prompt = None;
    let mut parsed = Args {
        prompt: String::new(),
        max_tokens: 256,
        temperature: 0.0,
        seed: 0,
        chat: false,
        model: DEFAULT_MODEL.to_string(),
        json: false,
    };
    let mut options_done = false;
    while let Some(arg) = args.next() {
        if options_done || !arg.starts_with("--") {
            if prompt.is_some() {
                return Err(ArgsError::ExtraArgument(arg));
            }
            prompt = Some(arg);
            continue;
        }
        let (option, inline) = match arg.split_once('=') {
            Some((o, v)) => (o.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut take = || inline.clone().or_else(|| args.next());
        match option.as_str() {
            "--" => options_done = true,
            "--help" => return Ok(Command::Help),
            "--max-tokens" => parsed.max_tokens = value(&option, take())?,
            "--temperature" => parsed.temperature = value(&option, take())?,
            "--seed" => parsed.seed = value(&option, take())?,
            "--model" => parsed.model = value(&option, take())?,
            "--chat" if inline.is_none() => parsed.chat = true,
            "--json" if inline.is_none() => parsed.json = true,
            _ => return Err(ArgsError::UnknownOption(arg)),
        }
    }
    parsed.prompt = prompt.ok_or(ArgsError::MissingPrompt)?;
    Ok(Command::Run(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, ArgsError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options_in_any_order() {
        let Ok(Command::Run(a)) = run(&[
            "--max-tokens",
            "16",
            "hi there",
            "--temperature=0.5",
            "--chat",
            "--json",
        ]) else {
            panic!("did not parse");
        };
        assert_eq!(a.prompt, "hi there");
        assert_eq!(a.max_tokens, 16);
        assert_eq!(a.temperature, 0.5);
        assert!(a.chat && a.json);
        assert_eq!(a.model, DEFAULT_MODEL);
    }

    #[test]
    fn bad_command_lines() {
        assert_eq!(run(&[]), Err(ArgsError::MissingPrompt));
        assert!(matches!(
            run(&["x", "--bogus"]),
            Err(ArgsError::UnknownOption(_))
        ));
        assert!(matches!(
            run(&["x", "--max-tokens"]),
            Err(ArgsError::MissingValue(_))
        ));
        assert!(matches!(
            run(&["x", "--seed", "-3"]),
            Err(ArgsError::InvalidValue { .. })
        ));
        assert_eq!(run(&["a", "b"]), Err(ArgsError::ExtraArgument("b".into())));
        assert!(
            matches!(run(&["--", "--not-an-option"]), Ok(Command::Run(a)) if a.prompt == "--not-an-option")
        );
    }
}
