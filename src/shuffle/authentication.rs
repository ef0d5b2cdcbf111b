//! Authentication of the monitor's internal records (shuffle parts, progress and merged
//! markers; checkpoints): an HMAC-SHA256 under a key the instances share, so that someone who
//! can write to the internal topics but does not hold the key cannot change what is merged or
//! where a partition resumes.
//!
//! Each authenticated record names the key that signed it by a short id (derived from the key,
//! never the key itself). An instance signs with one key and accepts that key and, during a
//! rotation, one more. A rotation is three rolling restarts: the old key signing and the new
//! one accepted, then the new one signing and the old one accepted, then the new one alone
//! (docs/operations.md, "Internal records"); at every step each instance reads what the
//! instances of the step before and after write.
//!
//! Without a key, records carry a CRC-32 only (corruption is detected, forgery is not).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

/// Bytes of an authentication tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 4;
/// The shortest key accepted, in bytes (e.g. the 64 characters of `openssl rand -hex 32`).
pub const MIN_KEY_LEN: usize = 32;

/// A key id: names the key that signed a record without revealing it.
pub type KeyId = [u8; KEY_ID_LEN];

/// One shared key. Its `Debug` shows the id only.
#[derive(Clone)]
struct Key {
    id: KeyId,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", hex_id(&self.id))
    }
}

impl Key {
    fn new(secret: &[u8], what: &str) -> Result<Self, KeyError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyError(format!(
                "the {what} is {} bytes long; it must be at least {MIN_KEY_LEN} (generate one \
                 with `openssl rand -hex 32`)",
                secret.len()
            )));
        }
        let id_mac = mac(secret).chain_update(b"sla-monitor internal key id");
        let tag = id_mac.finalize().into_bytes();
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&tag[..KEY_ID_LEN]);
        Ok(Key {
            id,
            secret: secret.to_vec(),
        })
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// A key id as text (8 hex digits), for logs and checkpoint records.
pub fn hex_id(id: &KeyId) -> String {
    crate::hex::hex(id)
}

/// A key that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Why an authenticated record's tag was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    /// Signed with a key this instance does not hold (or by an instance with a key, read by
    /// one without).
    UnknownKey,
    /// The tag does not match the content under the key it names: changed or forged.
    BadSignature,
}

impl Unverified {
    /// The refusal reason (a metric label).
    pub fn reason(self) -> &'static str {
        match self {
            Unverified::UnknownKey => "unknown_key",
            Unverified::BadSignature => "bad_signature",
        }
    }

    /// What is wrong, for the log.
    pub fn describe(self, key_id: &KeyId) -> String {
        match self {
            Unverified::UnknownKey => format!(
                "signed with key {}, which this instance does not hold: every instance needs \
                 the same --internal-key-file (during a rotation, the other key as \
                 --internal-key-accepted-file)",
                hex_id(key_id)
            ),
            Unverified::BadSignature => format!(
                "its authentication tag does not match its content under key {} (changed or \
                 forged)",
                hex_id(key_id)
            ),
        }
    }
}

/// How a monitor authenticates its internal records: unauthenticated (no key: CRC-32 only),
/// or with a signing key, an optional second accepted key, and whether records without a tag
/// are still read (only while switching authentication on).
#[derive(Debug, Clone, Default)]
pub struct RecordAuthentication {
    keys: Option<Keys>,
}

#[derive(Debug, Clone)]
struct Keys {
    signing: Key,
    accepted: Option<Key>,
    accept_unauthenticated: bool,
}

impl RecordAuthentication {
    /// No key: records are written with a CRC-32 and read without authentication.
    pub fn none() -> Self {
        RecordAuthentication { keys: None }
    }

    /// Signs with `signing`, accepts records signed with it or with `accepted`; refuses
    /// records without a tag unless `accept_unauthenticated`.
    pub fn with_keys(
        signing: &[u8],
        accepted: Option<&[u8]>,
        accept_unauthenticated: bool,
    ) -> Result<Self, KeyError> {
        let signing = Key::new(signing, "internal key")?;
        let accepted = accepted
            .map(|secret| Key::new(secret, "accepted internal key"))
            .transpose()?;
        Ok(RecordAuthentication {
            keys: Some(Keys {
                signing,
                accepted,
                accept_unauthenticated,
            }),
        })
    }

    /// Reads the signing key from `signing_file` (or takes `signing_value`, from the
    /// environment), the accepted key from `accepted_file`: surrounding whitespace trimmed.
    /// Neither key given: [`RecordAuthentication::none`] (an accepted key or
    /// `accept_unauthenticated` without a signing key is refused).
    pub fn load(
        signing_file: Option<&Path>,
        signing_value: Option<&str>,
        accepted_file: Option<&Path>,
        accept_unauthenticated: bool,
    ) -> Result<Self, KeyError> {
        let read = |path: &Path, flag: &str| {
            std::fs::read(path)
                .map(|bytes| bytes.trim_ascii().to_vec())
                .map_err(|e| KeyError(format!("{flag} {}: cannot read it: {e}", path.display())))
        };
        let signing = match (signing_file, signing_value) {
            (Some(_), Some(_)) => {
                return Err(KeyError(
                    "set either SLA_INTERNAL_KEY or --internal-key-file, not both".into(),
                ))
            }
            (Some(path), None) => Some(read(path, "--internal-key-file")?),
            (None, Some(value)) => Some(value.trim().as_bytes().to_vec()),
            (None, None) => None,
        };
        let accepted = accepted_file
            .map(|path| read(path, "--internal-key-accepted-file"))
            .transpose()?;
        match signing {
            Some(signing) => Self::with_keys(&signing, accepted.as_deref(), accept_unauthenticated),
            None if accepted.is_some() || accept_unauthenticated => Err(KeyError(
                "--internal-key-accepted-file and --accept-unauthenticated-internal-records \
                 need a signing key: set --internal-key-file (or SLA_INTERNAL_KEY)"
                    .into(),
            )),
            None => Ok(Self::none()),
        }
    }

    /// Whether records are signed.
    pub fn is_keyed(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether a record without a tag (checksummed formats) may be read: always without a
    /// key, with one only while switching authentication on.
    pub fn reads_unauthenticated(&self) -> bool {
        self.keys.as_ref().is_none_or(|k| k.accept_unauthenticated)
    }

    /// The id of the key records are signed with; `None` without a key.
    pub fn signing_id(&self) -> Option<KeyId> {
        self.keys.as_ref().map(|keys| keys.signing.id)
    }

    /// The signing key's id and the tag of `content`; `None` without a key.
    pub fn sign(&self, content: &[u8]) -> Option<(KeyId, [u8; TAG_LEN])> {
        let keys = self.keys.as_ref()?;
        let tag = mac(&keys.signing.secret)
            .chain_update(content)
            .finalize()
            .into_bytes();
        Some((keys.signing.id, tag.into()))
    }

    /// Checks that `tag` authenticates `content` under the key named `key_id` (compared in
    /// constant time).
    pub fn verify(&self, key_id: &KeyId, content: &[u8], tag: &[u8]) -> Result<(), Unverified> {
        let keys = self.keys.as_ref().ok_or(Unverified::UnknownKey)?;
        let key = std::iter::once(&keys.signing)
            .chain(keys.accepted.as_ref())
            .find(|k| &k.id == key_id)
            .ok_or(Unverified::UnknownKey)?;
        mac(&key.secret)
            .chain_update(content)
            .verify_slice(tag)
            .map_err(|_| Unverified::BadSignature)
    }

    /// The key ids this instance signs with and accepts, for the start-up log.
    pub fn describe(&self) -> String {
        match &self.keys {
            None => "unauthenticated (no --internal-key-file): anyone who can write to the \
                     internal topics can change results"
                .into(),
            Some(keys) => {
                let mut text = format!("signed with key {}", hex_id(&keys.signing.id));
                if let Some(accepted) = &keys.accepted {
                    text.push_str(&format!(", key {} also accepted", hex_id(&accepted.id)));
                }
                if keys.accept_unauthenticated {
                    text.push_str(", unauthenticated records still read (switching on)");
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &[u8] = b"0123456789abcdef0123456789abcdef-old";
    const NEW: &[u8] = b"0123456789abcdef0123456789abcdef-new";

    #[test]
    fn a_tag_verifies_under_its_key_only() {
        let old = RecordAuthentication::with_keys(OLD, None, false).unwrap();
        let (id, tag) = old.sign(b"content").unwrap();
        assert_eq!(old.verify(&id, b"content", &tag), Ok(()));
        assert_eq!(
            old.verify(&id, b"c0ntent", &tag),
            Err(Unverified::BadSignature)
        );
        let new = RecordAuthentication::with_keys(NEW, None, false).unwrap();
        assert_eq!(
            new.verify(&id, b"content", &tag),
            Err(Unverified::UnknownKey)
        );
        // Forging the id of a held key does not help without the key.
        let (new_id, _) = new.sign(b"").unwrap();
        assert_eq!(
            new.verify(&new_id, b"content", &tag),
            Err(Unverified::BadSignature)
        );
        assert_eq!(
            RecordAuthentication::none().verify(&id, b"content", &tag),
            Err(Unverified::UnknownKey)
        );
    }

    /// Rotation: each step's instances read what the step before and after sign.
    #[test]
    fn a_rotation_keeps_every_step_readable_by_its_neighbours() {
        let steps = [
            RecordAuthentication::with_keys(OLD, None, false).unwrap(),
            RecordAuthentication::with_keys(OLD, Some(NEW), false).unwrap(),
            RecordAuthentication::with_keys(NEW, Some(OLD), false).unwrap(),
            RecordAuthentication::with_keys(NEW, None, false).unwrap(),
        ];
        for pair in steps.windows(2) {
            for (writer, reader) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
                let (id, tag) = writer.sign(b"record").unwrap();
                assert_eq!(reader.verify(&id, b"record", &tag), Ok(()));
            }
        }
        let (id, tag) = steps[0].sign(b"record").unwrap();
        assert_eq!(
            steps[3].verify(&id, b"record", &tag),
            Err(Unverified::UnknownKey)
        );
    }

    #[test]
    fn short_keys_and_keys_in_two_places_are_refused_with_what_to_do() {
        let error = RecordAuthentication::with_keys(b"short", None, false).unwrap_err();
        assert!(
            error.to_string().contains("openssl rand -hex 32"),
            "{error}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), [OLD, b"\n"].concat()).unwrap();
        let both = RecordAuthentication::load(Some(file.path()), Some("x"), None, false);
        assert!(both.unwrap_err().to_string().contains("not both"));
        let accepted_alone = RecordAuthentication::load(None, None, Some(file.path()), false);
        assert!(accepted_alone
            .unwrap_err()
            .to_string()
            .contains("--internal-key-file"));
        // The trailing newline of a key file is not part of the key.
        let loaded = RecordAuthentication::load(Some(file.path()), None, None, false).unwrap();
        let direct = RecordAuthentication::with_keys(OLD, None, false).unwrap();
        let (id, tag) = direct.sign(b"x").unwrap();
        assert_eq!(loaded.verify(&id, b"x", &tag), Ok(()));
    }

    #[test]
    fn debug_shows_key_ids_never_keys() {
        let keys = RecordAuthentication::with_keys(OLD, Some(NEW), false).unwrap();
        let shown = format!("{keys:?} {}", keys.describe());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("48, 49, 50"), "{shown}");
    }

    #[test]
    fn unauthenticated_records_are_read_without_a_key_or_while_switching_on() {
        assert!(RecordAuthentication::none().reads_unauthenticated());
        assert!(RecordAuthentication::with_keys(OLD, None, true)
            .unwrap()
            .reads_unauthenticated());
        assert!(!RecordAuthentication::with_keys(OLD, None, false)
            .unwrap()
            .reads_unauthenticated());
    }
}
