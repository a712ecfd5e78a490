//! The calls of a constrained tool answer (`tool-choice` `required` or a named function),
//! followed while the answer is generated, so that each call's arguments can be streamed as
//! they come rather than once the answer has ended.
//!
//! Such an answer is nothing but calls in a known shape (see [`crate::tools::constraint`]):
//! JSON objects at a known depth (the answer itself for Llama 3's JSON, each object inside
//! Hermes' `<tool_call>` tags, the items of the generic format's `tool_calls` list), each with
//! a `name` string and the arguments under a known key. [`CallScanner`] follows the text
//! character by character (depth, strings and their escapes, the key being read) and hands out
//! [`Fragment`]s: a call's first once its name is known, then each new piece of its arguments'
//! JSON text.

use crate::tools::ToolFormat;

/// A piece of a streamed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// On a call's first fragment: the tool's name (the call begins here).
    pub name: Option<String>,
    /// More of the arguments' JSON text (concatenated, a call's fragments are all of it).
    pub arguments: String,
}

/// The call object being read.
#[derive(Debug, Default)]
struct Call {
    /// Its `name`, once read whole.
    name: Option<String>,
    /// Whether its first fragment has been handed out.
    begun: bool,
    /// Argument text not handed out yet.
    pending: String,
}

/// What the string being read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// A key of the call object.
    Key,
    /// The call's `name`.
    Name,
    /// Any other string (inside the arguments, or outside the calls).
    Other,
}

/// Follows a constrained tool answer; see the module doc.
#[derive(Debug)]
pub struct CallScanner {
    /// How deep the call objects sit (1: at the top level).
    call_depth: usize,
    /// The key their arguments are under.
    arguments_key: &'static str,
    /// Open objects and arrays around the current character.
    depth: usize,
    /// Inside a string: what it is; `escaped` after its backslash.
    string: Option<Reading>,
    escaped: bool,
    /// The key being read, then the last key read, of the call object.
    key: String,
    /// In the call object, where a key (not a value) comes next.
    expecting_key: bool,
    /// Inside the arguments' value.
    capturing: bool,
    /// The name being read.
    name: String,
    /// The call object being read.
    call: Option<Call>,
    /// Fragments ready to be handed out.
    out: Vec<Fragment>,
}

impl CallScanner {
    /// A scanner for answers of `format`.
    pub fn new(format: ToolFormat) -> Self {
        let (call_depth, arguments_key) = match format {
            ToolFormat::Hermes => (1, "arguments"),
            ToolFormat::Llama3Json => (1, "parameters"),
            // {"tool_calls": [{"name": ..., "arguments": ...}, ...]}
            ToolFormat::Generic => (3, "arguments"),
        };
        Self {
            call_depth,
            arguments_key,
            depth: 0,
            string: None,
            escaped: false,
            key: String::new(),
            expecting_key: false,
            capturing: false,
            name: String::new(),
            call: None,
            out: Vec::new(),
        }
    }

    /// Reads `text` (the answer's next piece); returns the fragments it completes.
    pub fn feed(&mut self, text: &str) -> Vec<Fragment> {
        for c in text.chars() {
            self.step(c);
        }
        self.flush();
        std::mem::take(&mut self.out)
    }

    fn step(&mut self, c: char) {
        if let Some(reading) = self.string {
            self.in_string(reading, c);
            return;
        }
        let at_call = self.call.is_some() && self.depth == self.call_depth;
        if self.capturing && at_call && (c == ',' || c == '}') {
            self.capturing = false;
        }
        if self.capturing {
            self.capture(c);
            match c {
                '{' | '[' => self.depth += 1,
                '}' | ']' => self.depth = self.depth.saturating_sub(1),
                '"' => self.string = Some(Reading::Other),
                _ => {}
            }
            return;
        }
        match c {
            '{' | '[' => {
                self.depth += 1;
                if c == '{' && self.depth == self.call_depth {
                    self.call = Some(Call::default());
                    self.expecting_key = true;
                    self.key.clear();
                }
            }
            '}' | ']' => {
                if at_call && c == '}' {
                    self.flush();
                    self.call = None;
                }
                self.depth = self.depth.saturating_sub(1);
            }
            '"' if at_call && self.expecting_key => {
                self.key.clear();
                self.string = Some(Reading::Key);
            }
            '"' if at_call && self.key == "name" => {
                self.name.clear();
                self.string = Some(Reading::Name);
            }
            '"' => self.string = Some(Reading::Other),
            ':' if at_call => {
                self.expecting_key = false;
                self.capturing = self.key == self.arguments_key;
            }
            ',' if at_call => self.expecting_key = true,
            _ => {}
        }
    }

    fn in_string(&mut self, reading: Reading, c: char) {
        let closes = !self.escaped && c == '"';
        self.escaped = !self.escaped && c == '\\';
        if self.capturing {
            self.capture(c);
        }
        if closes {
            self.string = None;
            if reading == Reading::Name {
                if let Some(call) = &mut self.call {
                    call.name = Some(std::mem::take(&mut self.name));
                }
            }
            return;
        }
        match reading {
            Reading::Key => self.key.push(c),
            Reading::Name => self.name.push(c),
            Reading::Other => {}
        }
    }

    fn capture(&mut self, c: char) {
        if let Some(call) = &mut self.call {
            call.pending.push(c);
        }
    }

    /// Hands out what the current call has ready: its first fragment once its name is known,
    /// then its new argument text.
    fn flush(&mut self) {
        let Some(call) = &mut self.call else {
            return;
        };
        match (&call.name, call.begun) {
            (Some(name), false) => {
                call.begun = true;
                self.out.push(Fragment {
                    name: Some(name.clone()),
                    arguments: std::mem::take(&mut call.pending),
                });
            }
            (_, true) if !call.pending.is_empty() => self.out.push(Fragment {
                name: None,
                arguments: std::mem::take(&mut call.pending),
            }),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `step` characters; returns the calls the fragments make.
    fn calls(format: ToolFormat, text: &str, step: usize) -> (Vec<(String, String)>, usize) {
        let mut scanner = CallScanner::new(format);
        let chars: Vec<char> = text.chars().collect();
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut fragments = 0;
        for piece in chars.chunks(step) {
            for f in scanner.feed(&piece.iter().collect::<String>()) {
                fragments += 1;
                match f.name {
                    Some(name) => calls.push((name, f.arguments)),
                    None => calls
                        .last_mut()
                        .expect("a call begun")
                        .1
                        .push_str(&f.arguments),
                }
            }
        }
        (calls, fragments)
    }

    #[test]
    fn generic_calls_stream_their_arguments_in_pieces() {
        let text = r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Pa\"ris }","unit":"celsius"}},{"name":"now","arguments":{}}]}"#;
        for step in [1, 3, 7, 1000] {
            let (got, fragments) = calls(ToolFormat::Generic, text, step);
            assert_eq!(
                got,
                [
                    (
                        "get_weather".to_string(),
                        r#"{"city":"Pa\"ris }","unit":"celsius"}"#.to_string()
                    ),
                    ("now".to_string(), "{}".to_string())
                ],
                "step {step}"
            );
            if step == 1 {
                assert!(fragments > 10, "one fragment per character: {fragments}");
            }
        }
    }

    #[test]
    fn hermes_and_llama3_calls_are_found_too() {
        let hermes = "<tool_call>\n{\"name\":\"f\",\"arguments\":{\"a\":[1,{\"b\":2}]}}\n</tool_call><tool_call>\n{\"name\":\"g\",\"arguments\":{}}\n</tool_call>";
        assert_eq!(
            calls(ToolFormat::Hermes, hermes, 2).0,
            [
                ("f".to_string(), r#"{"a":[1,{"b":2}]}"#.to_string()),
                ("g".to_string(), "{}".to_string())
            ]
        );
        let llama3 = r#"{"name":"f","parameters":{"x":"y"}}"#;
        assert_eq!(
            calls(ToolFormat::Llama3Json, llama3, 4).0,
            [("f".to_string(), r#"{"x":"y"}"#.to_string())]
        );
    }

    #[test]
    fn arguments_before_the_name_wait_for_it() {
        let text = r#"{"arguments":{"x":1},"name":"f"}"#;
        assert_eq!(
            calls(
                ToolFormat::Llama3Json,
                &text.replace("arguments", "parameters"),
                1
            )
            .0,
            [("f".to_string(), r#"{"x":1}"#.to_string())]
        );
    }

    #[test]
    fn a_cut_off_call_streams_as_far_as_it_went() {
        let (got, _) = calls(
            ToolFormat::Generic,
            r#"{"tool_calls":[{"name":"f","arguments":{"x":"ab"#,
            5,
        );
        assert_eq!(got, [("f".to_string(), r#"{"x":"ab"#.to_string())]);
    }
}
