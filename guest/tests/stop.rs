//! Streaming text assembly: UTF-8 holding back and stop sequences across token boundaries.

mod common;

use edge_llm_guest::stop::{Pushed, StopError, TextStream};

/// Feeds `pieces` one by one; returns the chunks, the stop that matched and the final flush.
fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, Option<String>, String) {
    let mut s =
        TextStream::new(stops.iter().map(|s| s.to_string()).collect()).expect("valid stops");
    let mut chunks = Vec::new();
    let mut stop = None;
    for p in pieces {
        let Pushed {
            text,
            stop: matched,
        } = s.push(p);
        assert!(!text.contains('\u{FFFD}'), "chunk {text:?} cut a character");
        chunks.push(text);
        if matched.is_some() {
            stop = matched;
            break;
        }
    }
    let tail = s.finish();
    (chunks, stop, tail)
}

fn bytes_split_everywhere(text: &str) -> Vec<Vec<u8>> {
    text.as_bytes().iter().map(|b| vec![*b]).collect()
}

#[test]
fn multibyte_characters_are_never_cut() {
    let text = "🦀 Rust 🦀 Ελληνικά ¿Qué?";
    let pieces = bytes_split_everywhere(text);
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let (chunks, stop, tail) = run(&[], &refs);
    assert_eq!(stop, None);
    assert_eq!(chunks.concat() + &tail, text);
    // The crab's four bytes arrive one by one: nothing is emitted until the last.
    assert_eq!(chunks[..4], ["", "", "", "🦀"]);
}

#[test]
fn crab_string_from_the_default_model() {
    // tokens.json: "🦀 Rust 🦀" = [10813, 116, 218, 36828, 15107, 116, 218]; the crab is split
    // over three tokens.
    let tok =
        edge_llm_guest::tokenizer::Tokenizer::from_gguf(&common::model_gguf()).expect("tokenizer");
    let ids = [10813u32, 116, 218, 36828, 15107, 116, 218];
    let mut s = TextStream::new(vec![]).expect("valid");
    let chunks: Vec<String> = ids
        .iter()
        .map(|&id| s.push(tok.token_bytes(id)).text)
        .collect();
    assert_eq!(chunks.concat() + &s.finish(), "🦀 Rust 🦀");
    assert_eq!(chunks[0], "");
    assert_eq!(chunks[2], "🦀");
    assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')));
}

#[test]
fn stop_split_across_tokens_is_not_leaked() {
    let (chunks, stop, tail) = run(&["</end>"], &[b"Hello </", b"en", b"d> more"]);
    assert_eq!(stop.as_deref(), Some("</end>"));
    assert_eq!(chunks, ["Hello ", "", ""]);
    assert_eq!(tail, "");
}

#[test]
fn false_start_of_a_stop_is_released() {
    let (chunks, stop, tail) = run(&["STOP"], &[b"a ST", b"OX b", b" ST"]);
    assert_eq!(stop, None);
    assert_eq!(chunks, ["a ", "STOX b", " "]);
    // A partial stop at the very end is real text.
    assert_eq!(tail, "ST");
}

#[test]
fn stop_at_the_very_start() {
    let (chunks, stop, _) = run(&["\n\n"], &[b"\n", b"\nabc"]);
    assert_eq!(stop.as_deref(), Some("\n\n"));
    assert_eq!(chunks.concat(), "");
    let (chunks, stop, _) = run(&["User:"], &[b"User: hi"]);
    assert_eq!(
        (chunks.concat().as_str(), stop.as_deref()),
        ("", Some("User:"))
    );
}

#[test]
fn overlapping_stops() {
    // The earliest match wins, whichever stop it belongs to.
    let (chunks, stop, _) = run(&["abcd", "bc"], &[b"xab", b"cd"]);
    assert_eq!(
        (chunks.concat().as_str(), stop.as_deref()),
        ("x", Some("abcd"))
    );
    // A stop that completes first ends generation, even if a longer one might still match.
    let (chunks, stop, _) = run(&["abcd", "bc"], &[b"xa", b"bc"]);
    assert_eq!(
        (chunks.concat().as_str(), stop.as_deref()),
        ("xa", Some("bc"))
    );
    // Self-overlapping stop: "aab" in "aaab".
    let (chunks, stop, _) = run(&["aab"], &[b"a", b"a", b"a", b"b!"]);
    assert_eq!(
        (chunks.concat().as_str(), stop.as_deref()),
        ("a", Some("aab"))
    );
    // Same start: the longer one is reported.
    let (chunks, stop, _) = run(&["ab", "abc"], &[b"zabc"]);
    assert_eq!(
        (chunks.concat().as_str(), stop.as_deref()),
        ("z", Some("abc"))
    );
}

#[test]
fn multibyte_stop_sequence() {
    let (chunks, stop, _) = run(&["🦀"], &[b"hi \xF0\x9F", b"\xA6\x80 bye"]);
    assert_eq!(
        (chunks.concat().as_str(), stop.as_deref()),
        ("hi ", Some("🦀"))
    );
}

#[test]
fn chunks_concatenate_to_the_full_text() {
    let text = "The quick brown 🦊 jumps over the lazy 🐶. END of story";
    let stops = ["END", "nope"];
    for step in 1..7 {
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(step).collect();
        let (chunks, stop, tail) = run(&stops, &pieces);
        assert_eq!(stop.as_deref(), Some("END"), "step {step}");
        assert_eq!(
            chunks.concat() + &tail,
            "The quick brown 🦊 jumps over the lazy 🐶. ",
            "step {step}"
        );
    }
    let no_stop = "no stop here, just text ✓";
    let pieces: Vec<&[u8]> = no_stop.as_bytes().chunks(3).collect();
    let (chunks, stop, tail) = run(&["zzz"], &pieces);
    assert_eq!(stop, None);
    assert_eq!(chunks.concat() + &tail, no_stop);
}

#[test]
fn invalid_utf8_becomes_replacement_at_finish() {
    let mut s = TextStream::new(vec![]).expect("valid");
    assert_eq!(s.push(b"ok \xF0\x9F").text, "ok ");
    assert_eq!(s.pending_len(), 2);
    assert_eq!(s.finish(), "\u{FFFD}");
    // A byte that can never start a character is not held back.
    let mut s = TextStream::new(vec![]).expect("valid");
    assert_eq!(s.push(b"a\xFFb").text, "a\u{FFFD}b");
}

#[test]
fn after_a_stop_nothing_more_comes_out() {
    let mut s = TextStream::new(vec!["x".into()]).expect("valid");
    assert_eq!(s.push(b"abxcd").text, "ab");
    assert!(s.is_stopped());
    assert_eq!(s.push(b"more"), Pushed::default());
    assert_eq!(s.finish(), "");
}

#[test]
fn empty_stop_is_rejected() {
    let err = TextStream::new(vec!["ok".into(), String::new()]).expect_err("empty stop");
    assert_eq!(err, StopError::EmptyStop { index: 1 });
}
