//! A fast scan of plain JSON for the values of several pointers at once, without serde: what
//! [`crate::record::json_pointer::find_each`] and [`crate::record::json_pointer::JsonPointer::find`]
//! try first. "Plain" is what producers write almost always: valid UTF-8, no backslash escape
//! anywhere, nesting no deeper than [`MAX_DEPTH`], and every number on a pointer's path a
//! plain integer. For such a document the scan answers exactly what the serde path answers
//! (property-tested); for anything else — an escape, a float on a path, invalid JSON — it
//! answers nothing and the serde path decides, with its error messages.
//!
//! The serde path walks a record through serde's visitor machinery even where it only skips;
//! with a stamp and a dimension in the value, that was a fifth of the monitor's time.

use crate::record::json_pointer::{array_index, JsonPointer, Scalar};
use std::borrow::Cow;

/// Deepest nesting the scan follows (serde's limit is 128; deeper documents go to it).
pub const MAX_DEPTH: usize = 64;

/// Looks for `pointers` (at most 8) in `document`: `Some(())` with `found[i]` what
/// `pointers[i]` names when the document is plain JSON (see the module documentation),
/// `None` when it is not (then `found` means nothing).
pub(crate) fn scan_plain<'a>(
    pointers: &[JsonPointer],
    document: &'a [u8],
    found: &mut [Option<Scalar<'a>>],
) -> Option<()> {
    debug_assert!(pointers.len() <= 8 && found.len() == pointers.len());
    let text = std::str::from_utf8(document).ok()?;
    found.iter_mut().for_each(|f| *f = None);
    let mut scan = Scan {
        text,
        bytes: document,
        at: 0,
        pointers,
        found,
    };
    let all = if pointers.len() == 8 {
        u8::MAX
    } else {
        (1u8 << pointers.len()) - 1
    };
    scan.whitespace();
    scan.value(0, all)?;
    scan.whitespace();
    (scan.at == document.len()).then_some(())
}

/// The scan's position in the document and what it has found.
struct Scan<'a, 'p, 'o> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    pointers: &'p [JsonPointer],
    found: &'o mut [Option<Scalar<'a>>],
}

impl<'a> Scan<'a, '_, '_> {
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn next_is(&mut self, byte: u8) -> bool {
        let is = self.bytes.get(self.at) == Some(&byte);
        if is {
            self.at += 1;
        }
        is
    }

    /// The pointers of `mask` that end at `depth` (they name the value there).
    fn ending_at(&self, depth: usize, mask: u8) -> u8 {
        if mask == 0 {
            return 0;
        }
        (0..self.pointers.len())
            .filter(|&i| mask & (1 << i) != 0 && self.pointers[i].tokens().len() == depth)
            .fold(0u8, |m, i| m | (1 << i))
    }

    fn write(&mut self, mask: u8, value: Option<Scalar<'a>>) {
        if mask == 0 {
            return;
        }
        for (i, slot) in self.found.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *slot = value.clone();
            }
        }
    }

    /// One value at `depth`, where the pointers of `mask` have matched every token so far.
    fn value(&mut self, depth: usize, mask: u8) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let here = self.ending_at(depth, mask);
        match *self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                self.write(here, Some(Scalar::Object));
                self.object(depth, mask & !here)
            }
            b'[' => {
                self.at += 1;
                self.write(here, Some(Scalar::Array));
                self.array(depth, mask & !here)
            }
            b'"' => {
                let text = self.string()?;
                self.write(here, Some(Scalar::Text(Cow::Borrowed(text))));
                Some(())
            }
            b't' => self.literal(b"true", here, Scalar::Boolean(true)),
            b'f' => self.literal(b"false", here, Scalar::Boolean(false)),
            b'n' => self.literal(b"null", here, Scalar::Null),
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                let integer = self.number()?;
                if mask != 0 {
                    // serde reads a number on a path in full: only plain integers here.
                    let value = integer.then(|| integer_value(&self.bytes[start..self.at]))??;
                    self.write(here, Some(value));
                }
                Some(())
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], here: u8, value: Scalar<'a>) -> Option<()> {
        if !self.bytes[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        self.write(here, Some(value));
        Some(())
    }

    /// The members of an object (its `{` read); `deeper`: the pointers going into it.
    fn object(&mut self, depth: usize, deeper: u8) -> Option<()> {
        self.whitespace();
        if self.next_is(b'}') {
            return Some(());
        }
        loop {
            self.whitespace();
            if self.bytes.get(self.at) != Some(&b'"') {
                return None;
            }
            let name = self.string()?;
            self.whitespace();
            if !self.next_is(b':') {
                return None;
            }
            self.whitespace();
            let next = if deeper == 0 {
                0
            } else {
                (0..self.pointers.len())
                    .filter(|&i| deeper & (1 << i) != 0 && self.pointers[i].tokens()[depth] == name)
                    .fold(0u8, |m, i| m | (1 << i))
            };
            // Of a member that appears twice, the last counts: its value replaces.
            self.write(next, None);
            self.value(depth + 1, next)?;
            self.whitespace();
            if self.next_is(b'}') {
                return Some(());
            }
            if !self.next_is(b',') {
                return None;
            }
        }
    }

    /// The elements of an array (its `[` read); `deeper`: the pointers going into it.
    fn array(&mut self, depth: usize, deeper: u8) -> Option<()> {
        self.whitespace();
        if self.next_is(b']') {
            return Some(());
        }
        let mut at = 0usize;
        loop {
            self.whitespace();
            let next = if deeper == 0 {
                0
            } else {
                (0..self.pointers.len())
                    .filter(|&i| {
                        deeper & (1 << i) != 0
                            && array_index(&self.pointers[i].tokens()[depth]) == Some(at)
                    })
                    .fold(0u8, |m, i| m | (1 << i))
            };
            self.value(depth + 1, next)?;
            self.whitespace();
            if self.next_is(b']') {
                return Some(());
            }
            if !self.next_is(b',') {
                return None;
            }
            at += 1;
        }
    }

    /// A string without escapes or control characters (its opening quote next).
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let length = self.bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let end = start + length;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Quotes are ASCII: both ends are character boundaries of the valid text.
        Some(&self.text[start..end])
    }

    /// A JSON number (grammar only); whether it is an integer (no fraction, no exponent).
    fn number(&mut self) -> Option<bool> {
        self.next_is(b'-');
        match self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.next_is(b'.') {
            integer = false;
            if !self.bytes.get(self.at)?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if !self.bytes.get(self.at)?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(integer)
    }

    fn digits(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }
}

/// What serde makes of an integer's text: an `i64` when it fits, a `u64` above, and `None`
/// (left to serde) where it would make a float: beyond `u64`, below `i64::MIN`, or `-0`.
fn integer_value(text: &[u8]) -> Option<Scalar<'static>> {
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let mut magnitude: u64 = 0;
    for &digit in digits {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        let value = (magnitude as i64).wrapping_neg();
        (value < 0).then_some(Scalar::Integer(value))
    } else {
        Some(i64::try_from(magnitude).map_or(Scalar::Unsigned(magnitude), Scalar::Integer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::json_pointer::find_each_parsing;
    use proptest::prelude::*;

    fn owned(found: Vec<Option<Scalar<'_>>>) -> Vec<Option<Scalar<'static>>> {
        found
            .into_iter()
            .map(|f| f.map(Scalar::into_owned))
            .collect()
    }

    /// What the scan answers, and what serde answers (`Err` with serde's refusal).
    #[allow(clippy::type_complexity)]
    fn both(
        pointers: &[&str],
        document: &[u8],
    ) -> (
        Option<Vec<Option<Scalar<'static>>>>,
        Result<Vec<Option<Scalar<'static>>>, String>,
    ) {
        let pointers: Vec<JsonPointer> = pointers
            .iter()
            .map(|p| JsonPointer::parse(p).unwrap())
            .collect();
        let mut found = vec![None; pointers.len()];
        let scanned = scan_plain(&pointers, document, &mut found).map(|()| owned(found));
        let mut found = vec![None; pointers.len()];
        let parsed = find_each_parsing(&pointers, document, &mut found)
            .map(|()| owned(found))
            .map_err(|e| e.to_string());
        (scanned, parsed)
    }

    #[test]
    fn reads_a_stamped_record_with_a_dimension() {
        let record = br#"{"visit":{"id":"v-1","event_time":1700000000},"start_processing_time_ms":1700000000123,"tenant":"t7"}"#;
        let (scanned, parsed) = both(
            &["/tenant", "/start_processing_time_ms", "/visit/event_time"],
            record,
        );
        let expected = vec![
            Some(Scalar::Text("t7".into())),
            Some(Scalar::Integer(1_700_000_000_123)),
            Some(Scalar::Integer(1_700_000_000)),
        ];
        assert_eq!(scanned.as_ref(), Some(&expected));
        assert_eq!(parsed, Ok(expected));
    }

    #[test]
    fn leaves_to_serde_what_it_does_not_read_the_same_way() {
        for (pointer, document) in [
            ("/a", r#"{"a":"x\"y"}"#),
            ("/b", r#"{"a":"\u00e9","b":1}"#),
            ("/a", r#"{"a":1.5}"#),
            ("/a", r#"{"a":-0}"#),
            ("/a", r#"{"a":1e400}"#),
            ("/a", r#"{"a":18446744073709551616}"#),
            ("/a", r#"{"a":-9223372036854775809}"#),
            ("/a/b", r#"{"a":2.5e3}"#),
            ("/a", r#"{"a":1"#),
            ("/a", r#"{"a":01}"#),
            ("/a", "{\"a\":\"\u{1}\"}"),
            ("/a", r#"{"a":1} x"#),
            ("/a", ""),
        ] {
            let (scanned, parsed) = both(&[pointer], document.as_bytes());
            assert_eq!(
                scanned, None,
                "{document} is left to serde (serde: {parsed:?})"
            );
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert_eq!(both(&["/0"], deep.as_bytes()).0, None);
    }

    #[test]
    fn reads_integers_at_the_edges_as_serde_does() {
        for (number, scalar) in [
            ("0", Scalar::Integer(0)),
            ("-1", Scalar::Integer(-1)),
            ("9223372036854775807", Scalar::Integer(i64::MAX)),
            ("9223372036854775808", Scalar::Unsigned(1 << 63)),
            ("18446744073709551615", Scalar::Unsigned(u64::MAX)),
            ("-9223372036854775808", Scalar::Integer(i64::MIN)),
        ] {
            let document = format!(r#"{{"a": {number} }}"#);
            let (scanned, parsed) = both(&["/a"], document.as_bytes());
            assert_eq!(scanned, Some(vec![Some(scalar.clone())]), "{number}");
            assert_eq!(parsed, Ok(vec![Some(scalar)]), "{number}");
        }
    }

    /// JSON text as producers write it and as they should not: whitespace, repeated members,
    /// escapes, numbers of every form, non-ASCII text, and broken pieces.
    fn json_text() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("-0".to_string()),
            Just("0.5".to_string()),
            Just("-1.25e-3".to_string()),
            Just("1E+2".to_string()),
            Just("1e400".to_string()),
            Just("18446744073709551616".to_string()),
            Just("-9223372036854775809".to_string()),
            Just("01".to_string()),
            Just("1.".to_string()),
            Just("-".to_string()),
        ];
        let string = prop_oneof![
            "[a-c0-9]{0,4}".prop_map(|s| format!("\"{s}\"")),
            Just("\"é☃\"".to_string()),
            Just(r#""q\"uote""#.to_string()),
            Just(r#""\u0041""#.to_string()),
            Just("\"tab\there\"".to_string()),
            Just("\"open".to_string()),
        ];
        let leaf = prop_oneof![
            number,
            string,
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
            Just("nul".to_string()),
        ];
        let space = prop_oneof![
            8 => Just(""),
            1 => Just(" "),
            1 => Just("\n\t"),
        ];
        leaf.prop_recursive(5, 48, 5, move |inner| {
            let key = prop_oneof![Just("a"), Just("b"), Just("0"), Just("a/b"), Just("é")];
            prop_oneof![
                (
                    proptest::collection::vec(inner.clone(), 0..5),
                    space.clone()
                )
                    .prop_map(|(items, s)| format!("[{s}{}{s}]", items.join(&format!("{s},")))),
                (proptest::collection::vec((key, inner), 0..5), space.clone()).prop_map(
                    |(members, s)| {
                        let members: Vec<String> = members
                            .iter()
                            .map(|(k, v)| format!("\"{k}\"{s}:{s}{v}"))
                            .collect();
                        format!("{{{s}{}}}", members.join(","))
                    }
                ),
            ]
        })
    }

    fn pointer_sets() -> impl Strategy<Value = Vec<String>> {
        let token = prop_oneof![
            Just("a"),
            Just("b"),
            Just("0"),
            Just("1"),
            Just("01"),
            Just("-"),
            Just("a~1b"),
            Just("é"),
        ];
        let pointer = proptest::collection::vec(token, 0..4)
            .prop_map(|t| t.iter().map(|t| format!("/{t}")).collect::<String>());
        proptest::collection::vec(pointer, 1..6)
    }

    proptest! {
        /// Whenever the scan answers, serde finds the document valid and every pointer's value
        /// the same; whenever serde refuses a document, the scan does not answer.
        #[test]
        fn answers_only_what_serde_answers(text in json_text(), pointers in pointer_sets()) {
            let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
            let (scanned, parsed) = both(&pointers, text.as_bytes());
            if let Some(scanned) = scanned {
                prop_assert_eq!(Ok(scanned), parsed, "{}", text);
            }
        }

        /// The same for any bytes, and for documents cut or with a byte changed.
        #[test]
        fn answers_only_what_serde_answers_for_damaged_text(
            text in json_text(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            pointers in pointer_sets(),
        ) {
            let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() {
                let at = cut.index(bytes.len());
                let mut changed = bytes.clone();
                changed[at] = byte;
                bytes.truncate(at);
                for document in [&bytes, &changed] {
                    let (scanned, parsed) = both(&pointers, document);
                    if let Some(scanned) = scanned {
                        prop_assert_eq!(Ok(scanned), parsed);
                    }
                }
            }
        }

        /// Plain documents (no escapes, integers only, any whitespace and repeated members)
        /// are answered by the scan, not left to serde.
        #[test]
        fn answers_plain_documents(text in json_text(), pointers in pointer_sets()) {
            let plain = !text.contains('\\')
                && !["0.5", "1.", "1E+2", "1e400", "\t"].iter().any(|n| text.contains(n))
                && !text.contains("-0")
                && !text.contains("nul,") && !text.contains("nul]") && !text.contains("nul}") && text != "nul"
                && !text.contains("\"open") && !text.contains("01")
                && !text.contains("-,") && !text.contains("-]") && !text.contains("-}") && text != "-"
                && !text.contains("18446744073709551616") && !text.contains("-9223372036854775809");
            let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
            let (scanned, parsed) = both(&pointers, text.as_bytes());
            if plain && parsed.is_ok() {
                prop_assert!(scanned.is_some(), "{}", text);
            }
        }
    }
}
