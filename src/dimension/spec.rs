//! `--dimension NAME=SOURCE`: a name for the dimension and where each record's value is read,
//! a member of its JSON value (`field:<JSON pointer>`) or a Kafka header (`header:<name>`),
//! as for `--start-time`. Values are strings; a record without one has the value
//! [`MISSING_VALUE`]. A record's values across the job's dimensions make one key.

use crate::record::json_pointer::{JsonPointer, Scalar};
use crate::record::stamp::RecordHeaders;
use std::fmt;
use std::str::FromStr;

/// Most dimensions one job splits by (each adds its values to every window's key).
pub const MAX_DIMENSIONS: usize = 3;
/// Longest value kept, in bytes; a longer one is cut (at a character boundary) and ends in
/// `…`, so distinct values that share their first bytes share a document.
pub const MAX_VALUE_BYTES: usize = 128;
/// The value of a record that has none (no such member or header, `null`, an array or an
/// object).
pub const MISSING_VALUE: &str = "__missing__";
/// The value under which every value without a document of its own is counted.
pub const OTHER_VALUE: &str = "__other__";

/// Where a dimension's value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// A member of the JSON value (`field:/tenant`).
    Field(JsonPointer),
    /// A Kafka header (`header:tenant`); of repeated headers the last counts.
    Header(String),
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSource::Field(pointer) => write!(f, "field:{pointer}"),
            ValueSource::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// A dimension flag that cannot be used, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DimensionError(String);

impl DimensionError {
    /// A refusal saying `message` (what is wrong and what to write instead).
    pub(crate) fn new(message: String) -> Self {
        DimensionError(message)
    }
}

/// One `--dimension`: its name and where its values are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    /// The name documents and alerts use (`tenant`).
    pub name: String,
    /// Where each record's value is read.
    pub source: ValueSource,
}

impl FromStr for Dimension {
    type Err = DimensionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((name, source)) = text.split_once('=') else {
            return Err(DimensionError(format!(
                "{text:?} is not a dimension: write NAME=SOURCE, e.g. tenant=field:/tenant or \
                 region=header:region"
            )));
        };
        if !is_dimension_name(name) {
            return Err(DimensionError(format!(
                "dimension name {name:?}: use 1 to 64 ASCII letters, digits, '_' or '-', \
                 starting with a letter (it becomes a document field and an alert label)"
            )));
        }
        let source = if let Some(pointer) = source.strip_prefix("field:") {
            JsonPointer::parse(pointer)
                .map(ValueSource::Field)
                .map_err(|e| DimensionError(format!("dimension {name}: {e}")))?
        } else if let Some(header) = source.strip_prefix("header:") {
            if header.is_empty() {
                return Err(DimensionError(format!(
                    "dimension {name}: header: needs a header name, e.g. header:tenant"
                )));
            }
            ValueSource::Header(header.to_string())
        } else {
            return Err(DimensionError(format!(
                "dimension {name}: {source:?} is not a value source: write field:<JSON pointer> \
                 (e.g. field:/tenant) or header:<name> (e.g. header:tenant)"
            )));
        };
        Ok(Dimension {
            name: name.to_string(),
            source,
        })
    }
}

/// Whether `name` can name a dimension: 1 to 64 ASCII letters, digits, `_` or `-`, starting
/// with a letter (it becomes a document field and an alert label).
pub fn is_dimension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks a job's dimensions together: at most [`MAX_DIMENSIONS`], names distinct.
pub fn check_dimensions(dimensions: &[Dimension]) -> Result<(), DimensionError> {
    if dimensions.len() > MAX_DIMENSIONS {
        return Err(DimensionError(format!(
            "{} dimensions: at most {MAX_DIMENSIONS} (each multiplies the values a window can \
             hold); split by fewer, or combine them upstream into one field",
            dimensions.len()
        )));
    }
    for (i, dimension) in dimensions.iter().enumerate() {
        if dimensions[..i].iter().any(|d| d.name == dimension.name) {
            return Err(DimensionError(format!(
                "dimension {} is named twice",
                dimension.name
            )));
        }
    }
    Ok(())
}

impl ValueSource {
    /// Appends, as [`value_text`] writes it, the value a field pointer found (`found`; read in a
    /// pass shared with other fields): what [`Self::read_into`] appends for the same record.
    pub fn write_found(found: Option<&Scalar<'_>>, out: &mut String) {
        match found {
            Some(Scalar::Text(text)) => value_text(text, out),
            Some(Scalar::Integer(n)) => value_text(itoa::Buffer::new().format(*n), out),
            Some(Scalar::Unsigned(n)) => value_text(itoa::Buffer::new().format(*n), out),
            Some(Scalar::Float(x)) => value_text(&x.to_string(), out),
            Some(Scalar::Boolean(b)) => value_text(if *b { "true" } else { "false" }, out),
            _ => out.push_str(MISSING_VALUE),
        }
    }

    /// The value of the record whose value bytes are `payload` and whose headers are
    /// `headers`, appended to `out` as [`value_text`] writes it.
    pub fn read_into(&self, payload: Option<&[u8]>, headers: &dyn RecordHeaders, out: &mut String) {
        match self {
            ValueSource::Field(pointer) => {
                let found = payload.and_then(|bytes| pointer.find(bytes).ok().flatten());
                Self::write_found(found.as_ref(), out)
            }
            ValueSource::Header(name) => match headers.last(name) {
                Some(bytes) => value_text(&String::from_utf8_lossy(bytes), out),
                None => out.push_str(MISSING_VALUE),
            },
        }
    }
}

/// Appends `value` as a dimension value: cut to [`MAX_VALUE_BYTES`], and a value spelled like
/// [`MISSING_VALUE`] or [`OTHER_VALUE`] gets a leading `_` so that it cannot be taken for them.
pub fn value_text(value: &str, out: &mut String) {
    if value == MISSING_VALUE || value == OTHER_VALUE {
        out.push('_');
    }
    if value.len() <= MAX_VALUE_BYTES {
        out.push_str(value);
        return;
    }
    let mut end = MAX_VALUE_BYTES - '…'.len_utf8();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&value[..end]);
    out.push('…');
}

/// A record's key: its values across the job's dimensions, in order.
pub fn read_key(
    dimensions: &[Dimension],
    payload: Option<&[u8]>,
    headers: &dyn RecordHeaders,
    out: &mut String,
) {
    read_key_found(dimensions, payload, headers, &|_| None, out)
}

/// [`read_key`], with the values of field dimensions already found: `found(i)` is
/// `Some(value found)` for dimension `i` when read in a shared pass, `None` to read it here.
pub fn read_key_found<'a>(
    dimensions: &[Dimension],
    payload: Option<&[u8]>,
    headers: &dyn RecordHeaders,
    found: &dyn Fn(usize) -> Option<Option<&'a Scalar<'a>>>,
    out: &mut String,
) {
    out.clear();
    for (i, dimension) in dimensions.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEPARATOR);
        }
        let start = out.len();
        match (found(i), &dimension.source) {
            (Some(value), ValueSource::Field(_)) => ValueSource::write_found(value, out),
            _ => dimension.source.read_into(payload, headers, out),
        }
        // A separator inside a value would split it: it is written as a space.
        if out[start..].contains(KEY_SEPARATOR) {
            let value = out[start..].replace(KEY_SEPARATOR, " ");
            out.truncate(start);
            out.push_str(&value);
        }
    }
}

/// Separates a key's values (ASCII unit separator).
pub const KEY_SEPARATOR: char = '\u{1f}';

/// The values of a key, one per dimension.
pub fn key_values(key: &str) -> impl Iterator<Item = &str> {
    key.split(KEY_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::stamp::NoHeaders;

    struct Headers(Vec<(&'static str, &'static [u8])>);

    impl RecordHeaders for Headers {
        fn last(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn flags_parse_and_bad_ones_say_what_to_write() {
        let d: Dimension = "tenant=field:/meta/tenant".parse().unwrap();
        assert_eq!(d.name, "tenant");
        assert_eq!(d.source.to_string(), "field:/meta/tenant");
        let h: Dimension = "region=header:x-region".parse().unwrap();
        assert_eq!(h.source, ValueSource::Header("x-region".into()));
        for (bad, hint) in [
            ("tenant", "NAME=SOURCE"),
            ("=field:/a", "dimension name"),
            ("1st=field:/a", "starting with a letter"),
            ("te nant=field:/a", "ASCII letters"),
            ("tenant=field:a", "tenant"),
            ("tenant=header:", "header name"),
            ("tenant=lineage", "field:<JSON pointer>"),
        ] {
            let e = bad.parse::<Dimension>().unwrap_err().to_string();
            assert!(e.contains(hint), "{bad}: {e}");
        }
        let four: Vec<Dimension> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| format!("{n}=field:/{n}").parse().unwrap())
            .collect();
        assert!(check_dimensions(&four[..3]).is_ok());
        assert!(check_dimensions(&four)
            .unwrap_err()
            .to_string()
            .contains("at most 3"));
        let twice = [four[0].clone(), four[0].clone()];
        assert!(check_dimensions(&twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn values_are_strings_and_a_missing_one_is_a_value_of_its_own() {
        let dims: Vec<Dimension> = ["t=field:/t", "n=field:/n", "h=header:h"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect();
        let mut key = String::new();
        let headers = Headers(vec![("h", b"a"), ("h", b"b")]);
        read_key(&dims, Some(br#"{"t":"gold","n":42}"#), &headers, &mut key);
        assert_eq!(key_values(&key).collect::<Vec<_>>(), ["gold", "42", "b"]);
        read_key(&dims, Some(br#"{"t":null,"n":[1]}"#), &NoHeaders, &mut key);
        assert_eq!(
            key_values(&key).collect::<Vec<_>>(),
            [MISSING_VALUE, MISSING_VALUE, MISSING_VALUE]
        );
        read_key(&dims, Some(b"not json"), &NoHeaders, &mut key);
        assert_eq!(key_values(&key).next(), Some(MISSING_VALUE));
        read_key(
            &dims[..1],
            Some(br#"{"t":"__other__"}"#),
            &NoHeaders,
            &mut key,
        );
        assert_eq!(key, "___other__", "not taken for the other values");
        read_key(
            &dims[..1],
            Some(b"{\"t\":\"a\\u001fb\"}"),
            &NoHeaders,
            &mut key,
        );
        assert_eq!(key, "a b");
        let long = format!(r#"{{"t":"{}"}}"#, "é".repeat(100));
        read_key(&dims[..1], Some(long.as_bytes()), &NoHeaders, &mut key);
        assert!(key.len() <= MAX_VALUE_BYTES && key.ends_with('…'), "{key}");
    }
}
