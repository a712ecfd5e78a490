//! Who may call: bearer API keys (`EDGE_LLM_API_KEYS`) and the browser origins CORS lets in
//! (`EDGE_LLM_CORS_ORIGINS`). Pure functions over header values, unit-tested natively.

use crate::config::Config;
use crate::error::ApiError;

/// The one route open without a key, as in llama.cpp's server.
pub const OPEN_PATH: &str = "/health";

/// Checks a request's `Authorization` header: without configured keys, or on [`OPEN_PATH`],
/// anything passes; otherwise it must be `Bearer KEY` with one of the keys.
pub fn authorize(
    config: &Config,
    path: &str,
    authorization: Option<&[u8]>,
) -> Result<(), ApiError> {
    if config.api_keys.is_empty() || path == OPEN_PATH {
        return Ok(());
    }
    let Some(value) = authorization else {
        return Err(ApiError::unauthorized(
            "no API key given: send `Authorization: Bearer KEY`",
        ));
    };
    let key = std::str::from_utf8(value)
        .ok()
        .and_then(|v| {
            let (scheme, key) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer KEY`"))?;
    // Every key is compared in full, so the time taken does not tell which bytes matched.
    let matched = config.api_keys.iter().fold(false, |any, k| {
        any | constant_time_eq::constant_time_eq(k.as_bytes(), key.as_bytes())
    });
    match matched {
        true => Ok(()),
        false => Err(ApiError::unauthorized("incorrect API key provided")),
    }
}

/// The methods a preflight may ask for.
const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";
/// The request headers allowed when a preflight names none.
const ALLOWED_HEADERS: &str = "authorization, content-type";
/// How long a browser may cache a preflight's answer, in seconds.
const MAX_AGE: &str = "86400";

/// The CORS headers of a response to a request from `origin`: none unless origins are
/// configured and `origin` is one of them (or `*` is).
pub fn cors_headers(config: &Config, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(origin) = origin else {
        return Vec::new();
    };
    if config.cors_origins.iter().any(|o| o == "*") {
        return vec![("access-control-allow-origin", "*".into())];
    }
    if config.cors_origins.iter().any(|o| o == origin) {
        return vec![
            ("access-control-allow-origin", origin.to_string()),
            ("vary", "origin".into()),
        ];
    }
    Vec::new()
}

/// The headers of the answer (204) to a CORS preflight (`OPTIONS` with
/// `access-control-request-method`): those of [`cors_headers`], and when the origin is allowed,
/// the methods, the requested headers and how long to cache this.
pub fn preflight_headers(
    config: &Config,
    origin: Option<&str>,
    requested_headers: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut headers = cors_headers(config, origin);
    if !headers.is_empty() {
        let allowed = requested_headers
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or(ALLOWED_HEADERS);
        headers.push(("access-control-allow-methods", ALLOWED_METHODS.into()));
        headers.push(("access-control-allow-headers", allowed.to_string()));
        headers.push(("access-control-max-age", MAX_AGE.into()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &str, origins: &str) -> Config {
        Config::from_vars(|n| match n {
            "EDGE_LLM_API_KEYS" if !keys.is_empty() => Some(keys.into()),
            "EDGE_LLM_CORS_ORIGINS" if !origins.is_empty() => Some(origins.into()),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn keys_guard_every_route_but_health() {
        let open = config("", "");
        assert!(authorize(&open, "/v1/models", None).is_ok());
        let c = config("k1,k2", "");
        assert!(authorize(&c, "/health", None).is_ok());
        let missing = authorize(&c, "/v1/models", None).unwrap_err();
        assert_eq!(missing.status, 401);
        assert_eq!(missing.code, Some("invalid_api_key"));
        assert!(authorize(&c, "/v1/models", Some(b"Bearer k2")).is_ok());
        assert!(authorize(&c, "/tokenize", Some(b"bearer k1")).is_ok());
        for bad in [
            &b"Bearer k3"[..],
            b"Bearer k",
            b"Bearer k11",
            b"k1",
            b"Basic k1",
            b"\xff",
        ] {
            assert_eq!(
                authorize(&c, "/v1/models", Some(bad)).unwrap_err().status,
                401
            );
        }
    }

    #[test]
    fn cors_answers_allowed_origins_only() {
        let none = config("", "");
        assert!(cors_headers(&none, Some("http://a.example")).is_empty());
        let some = config("", "http://a.example");
        assert_eq!(
            cors_headers(&some, Some("http://a.example"))[0],
            ("access-control-allow-origin", "http://a.example".into())
        );
        assert!(cors_headers(&some, Some("http://b.example")).is_empty());
        assert!(cors_headers(&some, None).is_empty());
        let any = config("", "*");
        assert_eq!(
            cors_headers(&any, Some("http://b.example")),
            [("access-control-allow-origin", "*".into())]
        );
        let pre = preflight_headers(&any, Some("http://b.example"), Some("Authorization, X-Y"));
        assert!(pre.contains(&("access-control-allow-headers", "Authorization, X-Y".into())));
        assert!(pre.contains(&("access-control-allow-methods", ALLOWED_METHODS.into())));
        assert!(preflight_headers(&some, Some("http://b.example"), None).is_empty());
    }
}
