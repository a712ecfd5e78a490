//! Streaming text assembly: turns the bytes of generated tokens into text chunks.
//!
//! [`TextStream`] guarantees that
//! - no chunk ends inside a UTF-8 character (incomplete trailing bytes are held back until the
//!   next token completes them, or replaced by U+FFFD at [`TextStream::finish`]);
//! - stop sequences are found even when split across tokens, and no byte of a stop sequence is
//!   ever emitted: the longest tail that could still grow into a stop sequence is held back;
//! - the concatenation of all chunks equals the full text (up to the first stop sequence).

use memchr::memmem::Finder;

/// Errors from configuring stop sequences.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopError {
    /// An empty stop sequence would match everywhere.
    #[error("stop sequence {index} is empty")]
    EmptyStop {
        /// Index of the offending sequence.
        index: usize,
    },
    /// More stop sequences than [`MAX_STOPS`]: each one is checked after every token.
    #[error("{count} stop sequences; at most {MAX_STOPS} are allowed")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A stop sequence longer than [`MAX_STOP_BYTES`].
    #[error("stop sequence {index} is {len} bytes long; at most {MAX_STOP_BYTES} are allowed")]
    TooLong {
        /// Index of the offending sequence.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
}

/// The most stop sequences one generation may have.
pub const MAX_STOPS: usize = 64;

/// The longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 1024;

/// The result of feeding bytes to a [`TextStream`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pushed {
    /// Text that is safe to emit now (may be empty).
    pub text: String,
    /// The stop sequence that matched, if one did; the stream is then finished.
    pub stop: Option<String>,
}

/// Assembles streamed token bytes into UTF-8-safe chunks and watches for stop sequences.
#[derive(Debug, Clone)]
pub struct TextStream {
    stops: Vec<String>,
    /// A substring searcher for each of `stops`, in the same order.
    finders: Vec<Finder<'static>>,
    pending: Vec<u8>,
    stopped: bool,
}

impl TextStream {
    /// A stream that stops at any of `stops` (none: only UTF-8 holding back).
    pub fn new(stops: Vec<String>) -> Result<Self, StopError> {
        if stops.len() > MAX_STOPS {
            return Err(StopError::TooMany { count: stops.len() });
        }
        if let Some(index) = stops.iter().position(String::is_empty) {
            return Err(StopError::EmptyStop { index });
        }
        if let Some((index, s)) = stops
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() > MAX_STOP_BYTES)
        {
            return Err(StopError::TooLong {
                index,
                len: s.len(),
            });
        }
        let finders = stops
            .iter()
            .map(|s| Finder::new(s.as_bytes()).into_owned())
            .collect();
        Ok(Self {
            stops,
            finders,
            pending: Vec::new(),
            stopped: false,
        })
    }

    /// Whether a stop sequence has matched.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes currently held back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds the bytes of the next token; returns what can be emitted now.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        if self.stopped {
            return Pushed::default();
        }
        self.pending.extend_from_slice(bytes);
        if let Some((pos, stop)) = self.find_stop() {
            let text = lossy(&self.pending[..pos]);
            self.pending.clear();
            self.stopped = true;
            return Pushed {
                text,
                stop: Some(stop),
            };
        }
        let keep = self
            .stop_prefix_len()
            .max(incomplete_utf8_len(&self.pending));
        let emit = self.pending.len() - keep;
        let text = lossy(&self.pending[..emit]);
        self.pending.drain(..emit);
        Pushed { text, stop: None }
    }

    /// Ends the stream: returns everything still held back (a partial stop sequence is real
    /// text after all; incomplete UTF-8 becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let text = lossy(&self.pending);
        self.pending.clear();
        text
    }

    /// The earliest stop match in the pending bytes (longest stop on a tie).
    fn find_stop(&self) -> Option<(usize, String)> {
        let mut best: Option<(usize, &String)> = None;
        for (stop, finder) in self.stops.iter().zip(&self.finders) {
            if let Some(pos) = finder.find(&self.pending) {
                let better = match best {
                    None => true,
                    Some((p, s)) => pos < p || (pos == p && stop.len() > s.len()),
                };
                if better {
                    best = Some((pos, stop));
                }
            }
        }
        best.map(|(p, s)| (p, s.clone()))
    }

    /// Length of the longest tail of the pending bytes that is a proper prefix of a stop.
    fn stop_prefix_len(&self) -> usize {
        self.stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.pending, s.as_bytes()))
            .max()
            .unwrap_or(0)
    }
}

/// The largest `k < needle.len()` such that `hay` ends with `needle[..k]`.
fn longest_suffix_prefix(hay: &[u8], needle: &[u8]) -> usize {
    let max = (needle.len() - 1).min(hay.len());
    (1..=max)
        .rev()
        .find(|&k| hay.ends_with(&needle[..k]))
        .unwrap_or(0)
}

/// Number of trailing bytes that start a UTF-8 character but do not finish it yet.
fn incomplete_utf8_len(bytes: &[u8]) -> usize {
    let tail_start = bytes.len().saturating_sub(3);
    for start in (tail_start..bytes.len()).rev() {
        let b = bytes[start];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        let have = bytes.len() - start;
        if have < need
            && std::str::from_utf8(&bytes[start..]).is_err_and(|e| e.error_len().is_none())
        {
            return have;
        }
        return 0;
    }
    0
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_lists_are_bounded() {
        let many = vec!["x".to_string(); MAX_STOPS + 1];
        assert!(matches!(
            TextStream::new(many),
            Err(StopError::TooMany { count: 65 })
        ));
        let long = vec!["ok".to_string(), "y".repeat(MAX_STOP_BYTES + 1)];
        assert!(matches!(
            TextStream::new(long),
            Err(StopError::TooLong { index: 1, .. })
        ));
        assert!(TextStream::new(vec!["x".to_string(); MAX_STOPS]).is_ok());
    }

    #[test]
    fn incomplete_tail() {
        let crab = "🦀".as_bytes();
        assert_eq!(incomplete_utf8_len(&crab[..1]), 1);
        assert_eq!(incomplete_utf8_len(&crab[..3]), 3);
        assert_eq!(incomplete_utf8_len(crab), 0);
        assert_eq!(incomplete_utf8_len(b"ab"), 0);
        assert_eq!(incomplete_utf8_len(&[b'a', 0x80]), 0);
        assert_eq!(incomplete_utf8_len(&[0xE0, 0x80]), 0); // overlong: never valid
    }

    #[test]
    fn suffix_prefix() {
        assert_eq!(longest_suffix_prefix(b"hello wo", b"world"), 2);
        assert_eq!(longest_suffix_prefix(b"hello", b"world"), 0);
        assert_eq!(longest_suffix_prefix(b"aaa", b"aab"), 2);
    }
}
