//! Bytes as lowercase hexadecimal text, for identifiers in logs, records and document ids.

/// `bytes` as two lowercase hex digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
