//! Values spelled as Python spells them, for templates written for Jinja2: the `tojson` filter
//! of Hugging Face's environment (exactly `json.dumps(x, ensure_ascii=False, indent=None,
//! separators=None, sort_keys=False)`, with those keyword options) and printing (`{{ x }}`
//! writes `None`, and lists and dicts as `repr` does). Templates print tool schemas and
//! arguments this way, so the bytes (spacing, quotes, key order, float spelling, escapes) are
//! part of the prompt the model was trained on.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// `value | tojson(ensure_ascii=…, indent=…, separators=…, sort_keys=…)`.
pub(super) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_owned(),
            None => " "
                .repeat(usize::try_from(v).map_err(|_| bad("indent must be a count or a string"))?),
        }),
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(pair) => match <[String; 2]>::try_from(pair) {
            Ok([item, key]) => (item, key),
            Err(_) => return Err(bad("separators must be two strings")),
        },
        // Python's defaults: no space before a newline when indenting.
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    kwargs.assert_all_used()?;
    let mut dumper = Dumper {
        ensure_ascii,
        sort_keys,
        indent,
        item_sep,
        key_sep,
        out: String::new(),
    };
    dumper.value(value, 0)?;
    Ok(Value::from(dumper.out))
}

/// `{{ value }}` as Jinja2 prints it: `str(value)`.
pub(super) fn format(out: &mut minijinja::Output, value: &Value) -> Result<(), Error> {
    out.write_str(&str(value)?)
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "writing a template's output"))
}

/// Python's `str(value)` (the `string` filter): a string as it is, anything else as `repr`
/// writes it; an undefined value is empty.
pub(super) fn str(value: &Value) -> Result<String, Error> {
    Ok(match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        ValueKind::Undefined => String::new(),
        _ => {
            let mut text = String::new();
            repr(&mut text, value)?;
            text
        }
    })
}

/// Jinja2's `iterable` test: whether Python can iterate the value (`None` cannot).
pub(super) fn is_iterable(value: &Value) -> bool {
    !matches!(
        value.kind(),
        ValueKind::None | ValueKind::Bool | ValueKind::Number
    ) && value.try_iter().is_ok()
}

/// Python's `repr` of a value.
fn repr(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Undefined => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
        ValueKind::Number => out.push_str(&python_float(
            f64::try_from(value.clone()).unwrap_or(f64::NAN),
        )),
        ValueKind::String => repr_str(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(out, &item)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(out, &key)?;
                out.push_str(": ");
                repr(out, &value.get_item(&key)?)?;
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
    Ok(())
}

/// `repr(str)`: single quotes, unless the text has one and no double quote.
fn repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa1).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("tojson: {}", msg.into()),
    )
}

struct Dumper {
    ensure_ascii: bool,
    sort_keys: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    out: String,
}

impl Dumper {
    fn value(&mut self, v: &Value, level: usize) -> Result<(), Error> {
        match v.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self
                .out
                .push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number if v.is_integer() => self.out.push_str(&v.to_string()),
            ValueKind::Number => {
                let f = f64::try_from(v.clone()).map_err(|_| bad("a number out of range"))?;
                self.out.push_str(&python_float(f));
            }
            ValueKind::String => self.string(v.as_str().unwrap_or_default()),
            // A lazy sequence (`map`, `select`, …) is a generator in Jinja2, which json refuses.
            ValueKind::Iterable => return Err(bad("a generator is not JSON serializable")),
            ValueKind::Seq => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.container('[', ']', level, items.len(), |d, i, level| {
                    d.value(&items[i], level)
                })?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in v.try_iter()? {
                    let item = v.get_item(&key)?;
                    entries.push((key_text(&key)?, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container('{', '}', level, entries.len(), |d, i, level| {
                    d.string(&entries[i].0);
                    d.out.push_str(&d.key_sep.clone());
                    d.value(&entries[i].1, level)
                })?;
            }
            kind => {
                return Err(bad(format!(
                    "a value of kind {kind} is not JSON serializable"
                )));
            }
        }
        Ok(())
    }

    /// `open item, item close`, one item a line when indenting (Python writes `[]` and `{}`
    /// for empty containers either way).
    fn container(
        &mut self,
        open: char,
        close: char,
        level: usize,
        len: usize,
        mut item: impl FnMut(&mut Self, usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.out.push(open);
        if len > 0 {
            for i in 0..len {
                if i > 0 {
                    self.out.push_str(&self.item_sep.clone());
                }
                self.newline(level + 1);
                item(self, i, level + 1)?;
            }
            self.newline(level);
        }
        self.out.push(close);
        Ok(())
    }

    fn newline(&mut self, level: usize) {
        if let Some(indent) = &self.indent {
            self.out.push('\n');
            for _ in 0..level {
                self.out.push_str(indent);
            }
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// A map key as Python's `json` writes it: strings as they are, numbers, booleans and `None`
/// as their JSON text.
fn key_text(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::Number if key.is_integer() => Ok(key.to_string()),
        ValueKind::Number => Ok(python_float(f64::try_from(key.clone()).unwrap_or(f64::NAN))),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::None => Ok("null".to_owned()),
        kind => Err(bad(format!(
            "keys must be str, int, float, bool or None, not {kind}"
        ))),
    }
}

/// `repr(float)`: the shortest text that reads back as `f`, in exponent form below 1e-4 and
/// from 1e16, with a signed two-digit exponent (`1e-05`, `1.5e+16`).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::python_float;

    #[test]
    fn floats_read_as_python_writes_them() {
        for (f, python) in [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (123.456, "123.456"),
        ] {
            assert_eq!(python_float(f), python, "{f}");
        }
    }
}
