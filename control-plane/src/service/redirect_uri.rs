//! Redirect URIs of developers' OAuth clients: parsed once, checked, and sent to the IdP as
//! exactly the serialisation that was checked (RFC 9700 §4.1, RFC 8252 §7.3).
//!
//! The URL parser forgives: it strips leading and trailing spaces and control characters,
//! drops tabs and newlines anywhere, reads `\` as `/` and accepts `https:host/path` without
//! slashes. So the text as typed is refused when the parser would have had to repair it, and
//! the parsed URL is refused when it is:
//! - not absolute, or its scheme is not `https` (plain `http` only to a loopback IP literal,
//!   `127.0.0.0/8` or `[::1]`, for native apps per RFC 8252 §7.3);
//! - carrying a fragment, user information, a `*` wildcard, or port 0;
//! - longer than [`MAX_URL_LEN`](super::validate::MAX_URL_LEN) bytes.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

use super::validate::MAX_URL_LEN;
use crate::error::ApiError;

/// A redirect URI that passed the checks; [`RedirectUri::as_str`] is what the IdP receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(Url);

/// Why a redirect URI is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    /// Longer than the bound.
    #[error("must be at most {MAX_URL_LEN} bytes")]
    TooLong,
    /// Spaces, tabs, line breaks or other control characters.
    #[error("must not contain spaces or control characters")]
    Whitespace,
    /// A backslash (which the URL parser reads as `/`).
    #[error("must not contain a backslash")]
    Backslash,
    /// Not `scheme://authority...`.
    #[error("must be an absolute URL starting with https://")]
    NotAbsolute,
    /// Not a URL at all.
    #[error("is not a URL")]
    Unparsable,
    /// A scheme other than https (or http to loopback).
    #[error("must use https (plain http only to a loopback address such as http://127.0.0.1)")]
    Scheme,
    /// Has a `#fragment`.
    #[error("must not contain a fragment (#...)")]
    Fragment,
    /// Has `user:password@`.
    #[error("must not contain user information (user@host)")]
    UserInfo,
    /// Has a `*`.
    #[error("must not contain a wildcard (*)")]
    Wildcard,
    /// Names port 0.
    #[error("must not use port 0")]
    PortZero,
}

impl RedirectUri {
    /// Parses and checks one redirect URI as typed (see the module docs).
    pub fn parse(text: &str) -> Result<Self, RedirectUriError> {
        if text.len() > MAX_URL_LEN {
            return Err(RedirectUriError::TooLong);
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || super::validate::is_deceptive(c))
        {
            return Err(RedirectUriError::Whitespace);
        }
        if text.contains('\\') {
            return Err(RedirectUriError::Backslash);
        }
        let has_authority = text
            .split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with("//"));
        if !has_authority {
            return Err(RedirectUriError::NotAbsolute);
        }
        if text.contains('*') {
            return Err(RedirectUriError::Wildcard);
        }
        let url = Url::parse(text).map_err(|_| RedirectUriError::Unparsable)?;
        let loopback = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(Host::Domain(_)) => false,
            None => return Err(RedirectUriError::NotAbsolute),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(RedirectUriError::Scheme),
        }
        if url.fragment().is_some() {
            return Err(RedirectUriError::Fragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo);
        }
        if url.port() == Some(0) {
            return Err(RedirectUriError::PortZero);
        }
        Ok(RedirectUri(url))
    }

    /// Parses a list, naming the field of the first bad one (`redirect_uris[i]`), refusing
    /// repeats (by serialisation) and more than [`MAX_LIST_LEN`](super::validate::MAX_LIST_LEN).
    pub fn parse_all(texts: &[String]) -> Result<Vec<RedirectUri>, ApiError> {
        let mut uris = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let uri = RedirectUri::parse(text).map_err(|error| {
                ApiError::invalid(format!("redirect_uris[{i}]"), error.to_string())
            })?;
            uris.push(uri);
        }
        super::validate::distinct("redirect_uris", &uris)?;
        Ok(uris)
    }

    /// The serialisation that was checked: what is sent to the IdP and stored.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The serialisations of a list.
    pub fn strings(uris: &[RedirectUri]) -> Vec<String> {
        uris.iter().map(|uri| uri.as_str().to_owned()).collect()
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> RedirectUriError {
        RedirectUri::parse(text).expect_err(text)
    }

    #[test]
    fn https_and_loopback_http_are_accepted_as_their_serialisation() {
        assert_eq!(
            RedirectUri::parse("https://app.example.com/callback?x=1")
                .unwrap()
                .as_str(),
            "https://app.example.com/callback?x=1"
        );
        assert_eq!(
            RedirectUri::parse("HTTPS://App.Example.COM/cb")
                .unwrap()
                .as_str(),
            "https://app.example.com/cb"
        );
        assert!(RedirectUri::parse("http://127.0.0.1:8400/cb").is_ok());
        assert!(RedirectUri::parse("http://127.9.9.9/cb").is_ok());
        assert!(RedirectUri::parse("http://[::1]:8400/cb").is_ok());
    }

    #[test]
    fn control_characters_and_spaces_anywhere_are_refused() {
        for text in [
            "https://app.example.com/cb\r\nX-Injected: 1",
            "https://app.example.com/c\tb",
            "https://app.example.com/cb\0",
            " https://app.example.com/cb",
            "https://app.example.com/cb ",
            "https://app.example.com/\u{202E}bc",
            "https://app.example.com/\u{200B}cb",
        ] {
            assert_eq!(refused(text), RedirectUriError::Whitespace, "{text:?}");
        }
    }

    #[test]
    fn shapes_the_parser_would_repair_are_refused() {
        assert_eq!(
            refused(r"https:\\evil.example\cb"),
            RedirectUriError::Backslash
        );
        assert_eq!(
            refused("https:evil.example/cb"),
            RedirectUriError::NotAbsolute
        );
        assert_eq!(
            refused("https:/evil.example/cb"),
            RedirectUriError::NotAbsolute
        );
        assert_eq!(refused("/relative/cb"), RedirectUriError::NotAbsolute);
        assert_eq!(refused("https://"), RedirectUriError::Unparsable);
    }

    #[test]
    fn wildcards_fragments_userinfo_and_port_zero_are_refused() {
        assert_eq!(
            refused("https://*.example.com/cb"),
            RedirectUriError::Wildcard
        );
        assert_eq!(
            refused("https://app.example.com/*"),
            RedirectUriError::Wildcard
        );
        assert_eq!(
            refused("https://app.example.com/cb#x"),
            RedirectUriError::Fragment
        );
        assert_eq!(
            refused("https://app.example.com/cb#"),
            RedirectUriError::Fragment
        );
        assert_eq!(
            refused("https://user:pw@app.example.com/cb"),
            RedirectUriError::UserInfo
        );
        assert_eq!(
            refused("https://user@app.example.com/cb"),
            RedirectUriError::UserInfo
        );
        assert_eq!(
            refused("https://app.example.com:0/cb"),
            RedirectUriError::PortZero
        );
    }

    #[test]
    fn plain_http_to_a_remote_host_and_other_schemes_are_refused() {
        assert_eq!(
            refused("http://app.example.com/cb"),
            RedirectUriError::Scheme
        );
        assert_eq!(refused("http://localhost/cb"), RedirectUriError::Scheme);
        assert_eq!(refused("http://10.0.0.1/cb"), RedirectUriError::Scheme);
        assert_eq!(
            refused("javascript://app.example.com/%0aalert(1)"),
            RedirectUriError::Scheme
        );
        assert_eq!(
            refused("ftp://app.example.com/cb"),
            RedirectUriError::Scheme
        );
    }

    #[test]
    fn overlong_uris_are_refused_before_parsing() {
        let long = format!("https://app.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(refused(&long), RedirectUriError::TooLong);
    }

    #[test]
    fn a_list_names_the_bad_index_and_refuses_repeats_by_serialisation() {
        let error = RedirectUri::parse_all(&[
            "https://a.example.com/cb".to_owned(),
            "http://a.example.com/cb".to_owned(),
        ])
        .unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidRequest { field: Some(ref f), .. } if f == "redirect_uris[1]")
        );
        let error = RedirectUri::parse_all(&[
            "https://a.example.com/cb".to_owned(),
            "HTTPS://A.example.com/cb".to_owned(),
        ])
        .unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidRequest { field: Some(ref f), .. } if f == "redirect_uris[1]")
        );
    }
}
