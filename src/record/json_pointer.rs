//! One value of a JSON document, found by an RFC 6901 JSON pointer without building the
//! document's tree: the parser walks the document once, descends only into the members and
//! elements on the pointer's path and skips everything else (still checking that the whole
//! document is valid JSON). What the monitor needs per record when the stamp is a field.

use crate::record::plain_scan::scan_plain;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A parsed RFC 6901 JSON pointer, e.g. `/meta/processed_at` (`~1` is `/`, `~0` is `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<String>,
}

/// Why a text is not a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// A non-empty pointer must start with `/`.
    #[error("a JSON pointer starts with '/' (e.g. /meta/processed_at), got {0:?}")]
    NoLeadingSlash(String),
    /// `~` must be followed by `0` or `1`.
    #[error("in JSON pointer {0:?}: '~' must be followed by 0 (for ~) or 1 (for /)")]
    BadEscape(String),
}

impl JsonPointer {
    /// Parses a pointer; the empty pointer is the whole document.
    pub fn parse(text: &str) -> Result<JsonPointer, PointerError> {
        if text.is_empty() {
            return Ok(JsonPointer {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash(text.to_string()));
        };
        let tokens = rest
            .split('/')
            .map(|raw| unescape(raw).ok_or_else(|| PointerError::BadEscape(text.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(JsonPointer {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The reference tokens, unescaped (`/a~1b/c` is `["a/b", "c"]`).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Finds the value the pointer names in `document`: `Ok(None)` when the path does not
    /// exist; an error when the document is not valid JSON. Of a member that appears twice,
    /// the last counts (as when the document is parsed whole).
    pub fn find<'a>(&self, document: &'a [u8]) -> Result<Option<Scalar<'a>>, serde_json::Error> {
        let mut found = [None];
        if scan_plain(std::slice::from_ref(self), document, &mut found).is_some() {
            let [found] = found;
            return Ok(found);
        }
        self.find_parsing(document)
    }

    /// [`Self::find`] through serde alone (what the plain scan must agree with).
    fn find_parsing<'a>(
        &self,
        document: &'a [u8],
    ) -> Result<Option<Scalar<'a>>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(document);
        let found = Seek {
            tokens: &self.tokens,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(found)
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// The value a pointer found: a scalar as the document wrote it, or the kind of a container.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A JSON integer that fits an `i64`.
    Integer(i64),
    /// A JSON integer above `i64::MAX`.
    Unsigned(u64),
    /// A JSON number with a fraction or exponent.
    Float(f64),
    /// A JSON string (borrowed from the document unless it had escapes).
    Text(Cow<'a, str>),
    /// `true` or `false`.
    Boolean(bool),
    /// `null`.
    Null,
    /// An array (not looked into).
    Array,
    /// An object (not looked into).
    Object,
}

impl Scalar<'_> {
    /// The same value, owning its text (to keep it beyond the document it was found in).
    pub fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Text(t) => Scalar::Text(Cow::Owned(t.into_owned())),
            Scalar::Integer(v) => Scalar::Integer(v),
            Scalar::Unsigned(v) => Scalar::Unsigned(v),
            Scalar::Float(v) => Scalar::Float(v),
            Scalar::Boolean(v) => Scalar::Boolean(v),
            Scalar::Null => Scalar::Null,
            Scalar::Array => Scalar::Array,
            Scalar::Object => Scalar::Object,
        }
    }

    /// The JSON type, for messages: "a string", "an object", …
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Integer(_) | Scalar::Unsigned(_) | Scalar::Float(_) => "a number",
            Scalar::Text(_) => "a string",
            Scalar::Boolean(_) => "a boolean",
            Scalar::Null => "null",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

/// Walks to the value at `tokens` of whatever comes next in the input.
struct Seek<'p> {
    tokens: &'p [String],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<Scalar<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.tokens.split_first() {
            None => deserializer.deserialize_any(Take).map(Some),
            Some((token, rest)) => deserializer.deserialize_any(Descend { token, rest }),
        }
    }
}

/// Takes the value itself (containers are skipped and only named).
struct Take;

impl<'de> Visitor<'de> for Take {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Integer(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::Unsigned(v), Scalar::Integer))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// The array index a reference token names (RFC 6901: `0` or digits without a leading zero;
/// `-` and anything else name no element).
pub(crate) fn array_index(token: &str) -> Option<usize> {
    (token == "0" || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit())))
        .then(|| token.parse::<usize>().ok())
        .flatten()
}

/// Looks for `token` in an object (a member name) or an array (an index), then for `rest`
/// inside it; scalars have no members.
struct Descend<'p> {
    token: &'p str,
    rest: &'p [String],
}

impl<'de> Visitor<'de> for Descend<'_> {
    type Value = Option<Scalar<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let index = array_index(self.token);
        let mut found = None;
        let mut at = 0usize;
        loop {
            if Some(at) == index {
                match seq.next_element_seed(Seek { tokens: self.rest })? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            at += 1;
        }
        Ok(found)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(self.token))? {
            if matches {
                found = map.next_value_seed(Seek { tokens: self.rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether the next member name is `token` (compared without copying unescaped names).
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<bool, E> {
        Err(E::custom("a member name must be a string"))
    }
}

/// Most pointers [`find_each`] looks for in one pass.
pub const MAX_POINTERS: usize = 8;

/// Finds the values of several pointers in one pass over `document`: `found[i]` becomes what
/// `pointers[i].find(document)` returns (at most [`MAX_POINTERS`]; `found` as long as
/// `pointers`). An error when the document is not valid JSON (then `found` means nothing).
/// What the monitor uses when a record's stamp and its dimensions are fields: one scan instead
/// of one per field.
pub fn find_each<'a>(
    pointers: &[JsonPointer],
    document: &'a [u8],
    found: &mut [Option<Scalar<'a>>],
) -> Result<(), serde_json::Error> {
    assert!(pointers.len() <= MAX_POINTERS && found.len() == pointers.len());
    if scan_plain(pointers, document, found).is_some() {
        return Ok(());
    }
    find_each_parsing(pointers, document, found)
}

/// [`find_each`] through serde alone (what the plain scan must agree with).
pub(crate) fn find_each_parsing<'a>(
    pointers: &[JsonPointer],
    document: &'a [u8],
    found: &mut [Option<Scalar<'a>>],
) -> Result<(), serde_json::Error> {
    found.iter_mut().for_each(|f| *f = None);
    let all = if pointers.len() == MAX_POINTERS {
        u8::MAX
    } else {
        (1u8 << pointers.len()) - 1
    };
    let mut deserializer = serde_json::Deserializer::from_slice(document);
    SeekEach {
        pointers,
        depth: 0,
        mask: all,
        found,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()
}

/// The pointers of `mask` (bit `i`: `pointers[i]`), each of which has matched `depth` tokens,
/// looked for in whatever comes next.
struct SeekEach<'p, 'o, 'a> {
    pointers: &'p [JsonPointer],
    depth: usize,
    mask: u8,
    found: &'o mut [Option<Scalar<'a>>],
}

impl SeekEach<'_, '_, '_> {
    /// The pointers of the mask that end here (they name the value itself).
    fn ending_here(&self) -> u8 {
        (0..self.pointers.len())
            .filter(|&i| self.mask & (1 << i) != 0 && self.pointers[i].tokens.len() == self.depth)
            .fold(0u8, |m, i| m | (1 << i))
    }
}

/// Writes `value` (a clone of it) into the slots of `mask`.
fn write<'a>(found: &mut [Option<Scalar<'a>>], mask: u8, value: &Option<Scalar<'a>>) {
    for (i, slot) in found.iter_mut().enumerate() {
        if mask & (1 << i) != 0 {
            *slot = value.clone();
        }
    }
}

impl<'de> DeserializeSeed<'de> for SeekEach<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let here = self.ending_here();
        if here == self.mask {
            let value = deserializer.deserialize_any(Take)?;
            write(self.found, here, &Some(value));
            Ok(())
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for SeekEach<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::Integer(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(i64::try_from(v).map_or(Scalar::Unsigned(v), Scalar::Integer))
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.scalar(Scalar::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Text(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.scalar(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let here = self.ending_here();
        write(self.found, here, &Some(Scalar::Array));
        let deeper = self.mask & !here;
        let index_of = |i: usize| array_index(&self.pointers[i].tokens[self.depth]);
        let mut at = 0usize;
        loop {
            let next = (0..self.pointers.len())
                .filter(|&i| deeper & (1 << i) != 0 && index_of(i) == Some(at))
                .fold(0u8, |m, i| m | (1 << i));
            let more = if next == 0 {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                seq.next_element_seed(SeekEach {
                    pointers: self.pointers,
                    depth: self.depth + 1,
                    mask: next,
                    found: &mut *self.found,
                })?
                .is_some()
            };
            if !more {
                break;
            }
            at += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let here = self.ending_here();
        write(self.found, here, &Some(Scalar::Object));
        let deeper = self.mask & !here;
        while let Some(next) = map.next_key_seed(KeysMatching {
            pointers: self.pointers,
            depth: self.depth,
            mask: deeper,
        })? {
            if next == 0 {
                map.next_value::<IgnoredAny>()?;
            } else {
                // Of a member that appears twice, the last counts: its value replaces.
                write(self.found, next, &None);
                map.next_value_seed(SeekEach {
                    pointers: self.pointers,
                    depth: self.depth + 1,
                    mask: next,
                    found: &mut *self.found,
                })?;
            }
        }
        Ok(())
    }
}

impl<'a> SeekEach<'_, '_, 'a> {
    /// A scalar: the value of the pointers ending here; the others have no member in it.
    fn scalar<E>(self, value: Scalar<'a>) -> Result<(), E> {
        let here = self.ending_here();
        write(self.found, here, &Some(value));
        Ok(())
    }
}

/// Which pointers of `mask` the next member name continues (their token at `depth`).
struct KeysMatching<'p> {
    pointers: &'p [JsonPointer],
    depth: usize,
    mask: u8,
}

impl<'de> DeserializeSeed<'de> for KeysMatching<'_> {
    type Value = u8;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u8, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeysMatching<'_> {
    type Value = u8;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u8, E> {
        Ok((0..self.pointers.len())
            .filter(|&i| self.mask & (1 << i) != 0 && self.pointers[i].tokens[self.depth] == v)
            .fold(0u8, |m, i| m | (1 << i)))
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<u8, E> {
        Err(E::custom("a member name must be a string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbitrary_json::arbitrary_json;
    use proptest::prelude::*;
    use serde_json::Value;

    fn find(pointer: &str, document: &str) -> Option<Scalar<'static>> {
        let found = JsonPointer::parse(pointer)
            .unwrap()
            .find(document.as_bytes())
            .unwrap();
        found.map(Scalar::into_owned)
    }

    /// What a full parse finds at the pointer, in the same terms.
    fn oracle(pointer: &str, document: &Value) -> Option<Scalar<'static>> {
        document.pointer(pointer).map(|v| match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Boolean(*b),
            Value::Number(n) => n
                .as_i64()
                .map(Scalar::Integer)
                .or_else(|| n.as_u64().map(Scalar::Unsigned))
                .unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap())),
            Value::String(s) => Scalar::Text(Cow::Owned(s.clone())),
            Value::Array(_) => Scalar::Array,
            Value::Object(_) => Scalar::Object,
        })
    }

    #[test]
    fn finds_nested_members_and_elements() {
        let doc = r#"{"order":{"id":7},"meta":{"processed_at":"2026-11-30T05:50:00.123Z","n":[1,{"t":5}]}}"#;
        assert_eq!(
            find("/meta/processed_at", doc),
            Some(Scalar::Text("2026-11-30T05:50:00.123Z".into()))
        );
        assert_eq!(find("/meta/n/1/t", doc), Some(Scalar::Integer(5)));
        assert_eq!(find("/meta/n/01", doc), None, "no leading zeros");
        assert_eq!(find("/meta/n/-", doc), None);
        assert_eq!(find("/order/id/x", doc), None);
        assert_eq!(find("/absent", doc), None);
        assert_eq!(find("", "17"), Some(Scalar::Integer(17)));
        assert_eq!(
            find("/a~1b/c~0d", r#"{"a/b":{"c~d":1.5}}"#),
            Some(Scalar::Float(1.5))
        );
        assert_eq!(
            find("/a", r#"{"a":1,"a":2}"#),
            Some(Scalar::Integer(2)),
            "last wins"
        );
    }

    #[test]
    fn one_pass_keeps_the_last_of_repeated_members() {
        let pointers: Vec<JsonPointer> = ["/a/b", "/a", "/c/1", ""]
            .iter()
            .map(|p| JsonPointer::parse(p).unwrap())
            .collect();
        let doc = br#"{"a":{"b":1},"c":[5,"x"],"a":{"c":2}}"#;
        let mut found = vec![None; 4];
        find_each(&pointers, doc, &mut found).unwrap();
        assert_eq!(
            found,
            [
                None,
                Some(Scalar::Object),
                Some(Scalar::Text("x".into())),
                Some(Scalar::Object)
            ]
        );
    }

    #[test]
    fn refuses_invalid_documents_and_pointers() {
        let p = JsonPointer::parse("/a").unwrap();
        assert!(p.find(br#"{"a":1"#).is_err());
        assert!(p.find(br#"{"a":1} x"#).is_err(), "trailing data");
        assert!(p.find(br#"{"b":[1,}"#).is_err(), "invalid outside the path");
        assert!(matches!(
            JsonPointer::parse("a"),
            Err(PointerError::NoLeadingSlash(_))
        ));
        assert!(matches!(
            JsonPointer::parse("/a~2"),
            Err(PointerError::BadEscape(_))
        ));
    }

    fn pointers() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("0".to_string()),
            Just("1".to_string()),
            Just("01".to_string()),
            Just("-".to_string()),
            Just("a~1b".to_string()),
            Just("".to_string()),
        ];
        proptest::collection::vec(token, 0..4)
            .prop_map(|t| t.iter().map(|t| format!("/{t}")).collect::<String>())
    }

    proptest! {
        #[test]
        fn agrees_with_parsing_the_whole_document(document in arbitrary_json(&["a", "b", "a/b", "0"]), pointer in pointers()) {
            // Both read the same text (a float's text may parse 1 ulp away from the original).
            let text = document.to_string();
            let reparsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(find(&pointer, &text), oracle(&pointer, &reparsed));
        }

        #[test]
        fn one_pass_finds_what_each_pointer_finds(document in arbitrary_json(&["a", "b", "a/b", "0"]), pointers in proptest::collection::vec(pointers(), 1..5)) {
            let text = document.to_string();
            let parsed: Vec<JsonPointer> = pointers.iter().map(|p| JsonPointer::parse(p).unwrap()).collect();
            let mut found = vec![None; parsed.len()];
            find_each(&parsed, text.as_bytes(), &mut found).unwrap();
            for (pointer, found) in parsed.iter().zip(found) {
                prop_assert_eq!(found.map(Scalar::into_owned), pointer.find(text.as_bytes()).unwrap().map(Scalar::into_owned), "{}", pointer);
            }
        }

        #[test]
        fn one_pass_is_valid_exactly_when_the_document_is(bytes in proptest::collection::vec(any::<u8>(), 0..64), pointer in pointers()) {
            let p = JsonPointer::parse(&pointer).unwrap();
            let mut found = vec![None; 2];
            let each = find_each(&[p.clone(), p.clone()], &bytes, &mut found).is_ok();
            prop_assert_eq!(each, p.find(&bytes).is_ok());
        }

        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), pointer in pointers()) {
            let p = JsonPointer::parse(&pointer).unwrap();
            let fast = p.find(&bytes).is_ok();
            let full = serde_json::from_slice::<Value>(&bytes).is_ok();
            prop_assert_eq!(fast, full, "valid exactly when the whole document is valid");
        }
    }
}
