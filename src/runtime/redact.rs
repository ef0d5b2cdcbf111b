//! What may be shown of a URL: logs and metric labels never carry the credentials a URL may
//! hold in its userinfo (`https://user:password@host/`).

/// `url` without its userinfo (`user:password@`), for logs and labels; unchanged when it has
/// none.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Keys whose values are secrets wherever they appear as `key=value` or `key: value` in text.
const SECRET_KEYS: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "sasl.oauthbearer.config",
];

/// HTTP authentication schemes: after `Authorization:` the credential is the next word.
const AUTH_SCHEMES: [&str; 5] = ["basic", "bearer", "apikey", "digest", "negotiate"];

/// A secret taken from the environment or a file (a password, an API key, a DSN): its
/// `Debug` and `Display` show `[redacted]`, so a struct holding one can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret(value.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Free text (a log line, an error chain) with every secret it may quote replaced by
/// `[redacted]`: URLs' userinfo, the values of `password=…`, `token: …` and the like (any key
/// containing one of `SECRET_KEYS`, e.g. `sasl.password`, `ssl.key.password`), and bearer
/// tokens. For what leaves the process (error reports); logs keep their own rules.
pub fn scrub_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // URLs' userinfo.
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(user_end) => {
                out.push_str("[redacted]@");
                rest = &after[user_end + 1..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    redact_values(&out)
}

/// `key=value` / `key: value` pairs whose key names a secret, and `Bearer …` tokens.
fn redact_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for (i, c) in text.char_indices() {
        if c != '=' && c != ':' {
            continue;
        }
        // The key: the word right before the separator, past spaces and a closing quote
        // (`password = x`, `"password":"x"`).
        let mut key_end = i;
        while key_end > 0 && matches!(bytes[key_end - 1], b' ' | b'\t' | b'"' | b'\'') {
            key_end -= 1;
        }
        let key_start = lower[..key_end]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .map_or(0, |p| p + 1);
        let key = &lower[key_start..key_end];
        if key.is_empty() || !SECRET_KEYS.iter().any(|k| key.contains(k)) {
            continue;
        }
        let skip_blanks = |mut at: usize| {
            while at < bytes.len() && matches!(bytes[at], b' ' | b'\t' | b'"' | b'\'') {
                at += 1;
            }
            at
        };
        let mut start = skip_blanks(i + 1);
        // `Authorization: Basic …` / `ApiKey …`: the credential follows the scheme.
        let mut credential = false;
        for scheme in AUTH_SCHEMES {
            let after = start + scheme.len();
            if lower[start..].starts_with(scheme) && bytes.get(after) == Some(&b' ') {
                start = skip_blanks(after);
                credential = true;
                break;
            }
        }
        let end = text[start..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ',' | ';' | '"' | '\'' | ')' | '}' | ']')
            })
            .map_or(text.len(), |e| start + e);
        // A value starting `//` is a URL's rest (`https://…`), but a credential after its
        // scheme is base64 and may start so.
        if end > start && (credential || !text[start..end].starts_with("//")) {
            cut.push((start, end));
        }
    }
    for scheme in ["bearer ", "apikey "] {
        let mut search = 0;
        while let Some(p) = lower[search..].find(scheme) {
            let start = search + p + scheme.len();
            let end = text[start..]
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '\''))
                .map_or(text.len(), |e| start + e);
            if end > start {
                cut.push((start, end));
            }
            search = start;
        }
    }
    cut.sort();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in cut {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str("[redacted]");
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Whether `url` carries userinfo (credentials) before its host.
pub fn has_userinfo(url: &str) -> bool {
    without_userinfo(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn credentials_are_removed_and_the_rest_kept() {
        assert_eq!(
            without_userinfo("https://am:s3cr%40t@alertmanager:9093/path?a=b@c"),
            "https://alertmanager:9093/path?a=b@c"
        );
        assert_eq!(without_userinfo("http://u@h"), "http://h");
        assert_eq!(
            without_userinfo("http://127.0.0.1:9200"),
            "http://127.0.0.1:9200"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
        assert!(has_userinfo("http://a:b@h/"));
        assert!(!has_userinfo("http://h/x@y"));
    }

    #[test]
    fn text_keeps_no_secret() {
        let text = r#"connecting to https://elastic:pw1@es:9200/_bulk failed; sasl.password=pw2 token: "pw3", Authorization: Bearer pw4 (ssl.key.password=pw5)"#;
        let shown = scrub_text(text);
        for secret in ["pw1", "pw2", "pw3", "pw4", "pw5"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("https://[redacted]@es:9200/_bulk"),
            "{shown}"
        );
        assert_eq!(
            scrub_text("nothing here: 3 records, http://h:1/x"),
            "nothing here: 3 records, http://h:1/x"
        );
    }

    /// The forms the first scrubber missed: JSON, spaces around `=`, HTTP schemes other than
    /// Bearer (as an Elasticsearch error may echo a request).
    #[test]
    fn json_spaced_and_scheme_credentials_are_scrubbed() {
        for (text, secret) in [
            (r#"{"username":"elastic","password":"pw6"}"#, "pw6"),
            (r#"{"api_key" : "pw7"}"#, "pw7"),
            ("password = pw8", "pw8"),
            ("Authorization: Basic ZWxhc3RpYzpwdzk=", "ZWxhc3RpYzpwdzk="),
            ("authorization: ApiKey a2V5OnB3MTA=", "a2V5OnB3MTA="),
            ("header ApiKey a2V5OnB3MTE= sent", "a2V5OnB3MTE="),
            (r#"{"Authorization":"Basic dTpwdzEy"}"#, "dTpwdzEy"),
        ] {
            let shown = scrub_text(text);
            assert!(!shown.contains(secret), "{secret} in {shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        assert_eq!(
            scrub_text(r#"{"username":"elastic"}"#),
            r#"{"username":"elastic"}"#
        );
    }

    #[test]
    fn a_secret_shows_redacted() {
        let secret: Secret = "pw13".parse().unwrap();
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "pw13");
    }

    proptest! {
        #[test]
        fn no_secret_survives_in_text(prefix in "[a-z ]{0,10}", key in "(sasl\\.password|password|token|api_key|\"password\")", separator in "(=| = |: |:)", secret in "[A-Za-z0-9]{6,12}", quote in "(\"|)", user in "[a-z]{1,6}", url_secret in "[A-Za-z0-9]{6,12}", scheme in "(Basic|ApiKey|Bearer)", header_secret in "[A-Za-z0-9+/=]{6,12}") {
            let text = format!("{prefix} {key}{separator}{quote}{secret}{quote} at https://{user}:{url_secret}@host/p, Authorization: {scheme} {header_secret}");
            let shown = scrub_text(&text);
            prop_assert!(!shown.contains(&secret), "{}", shown);
            prop_assert!(!shown.contains(&url_secret), "{}", shown);
            prop_assert!(!shown.contains(&header_secret), "{}", shown);
        }

        #[test]
        fn no_password_survives(user in "[a-z]{1,8}", password in "[A-Za-z0-9@:]{1,12}", host in "[a-z]{1,8}(:[0-9]{2,4})?", path in "(/[a-z@]{0,6}){0,2}") {
            let url = format!("https://{user}:{password}@{host}{path}");
            let shown = without_userinfo(&url);
            prop_assert_eq!(shown, format!("https://{host}{path}"));
        }
    }
}
