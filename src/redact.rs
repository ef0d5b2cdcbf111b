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

    proptest! {
        #[test]
        fn no_password_survives(user in "[a-z]{1,8}", password in "[A-Za-z0-9@:]{1,12}", host in "[a-z]{1,8}(:[0-9]{2,4})?", path in "(/[a-z@]{0,6}){0,2}") {
            let url = format!("https://{user}:{password}@{host}{path}");
            let shown = without_userinfo(&url);
            prop_assert_eq!(shown, format!("https://{host}{path}"));
        }
    }
}
