//! The language-model gateway behind the `llm` capability.
//!
//! A strategy never talks to the network. When the operator grants `llm`
//! and configures `[llm]` in the campaign file, the host sends the
//! strategy's messages to an OpenAI-compatible chat-completions endpoint
//! (`POST {url}` with `{"model", "messages", "max_tokens"}`), with the API
//! key read from an environment variable the strategy never sees, and
//! answers with the completion's text and token counts.
//!
//! Every outcome is an answer, never a trap: the budget is spent, the
//! endpoint is down, slow, answers an HTTP error, something that is not
//! JSON, or JSON that is not a chat completion — each becomes
//! `Err(reason)`, which the sandbox records in the call's transcript like
//! any other import answer (so `reagent audit replay` re-runs the call
//! without the network).
//!
//! Tokens are counted per campaign: the engine sums what each call's
//! transcript says was used and hands the total to the next gateway.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::strategy::{LlmCompletion, LlmMessage};

/// Largest response body read from the endpoint, and the largest
/// completion text handed to a strategy (both in `limits.rs`, with every
/// other number a strategy is held to).
pub use crate::limits::{
    LLM_MAX_CONTENT_BYTES as MAX_CONTENT_BYTES, LLM_MAX_RESPONSE_BYTES as MAX_RESPONSE_BYTES,
};

/// `[llm]` in the campaign file: the endpoint the operator allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The chat-completions endpoint, e.g.
    /// `https://api.openai.com/v1/chat/completions`.
    pub url: String,
    /// The model name sent in every request.
    pub model: String,
    /// The environment variable holding the API key (sent as
    /// `Authorization: Bearer …`); none for endpoints without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Prompt plus completion tokens this campaign may use in all.
    pub token_budget: u64,
    /// Completion tokens per call, at most.
    pub max_tokens: u32,
    /// Language-model calls per strategy call, at most.
    pub max_calls: u32,
    /// How long one request may take, connection included.
    #[serde(with = "crate::time::duration_secs")]
    pub timeout: Duration,
}

pub const DEFAULT_TOKEN_BUDGET: u64 = 100_000;
pub const DEFAULT_MAX_TOKENS: u32 = 1_024;
pub const DEFAULT_MAX_CALLS: u32 = 4;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl LlmConfig {
    /// Checks the values; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        let lower = self.url.to_ascii_lowercase();
        let https = lower.starts_with("https://");
        if !https && !lower.starts_with("http://") {
            return Err(format!(
                "llm.url = {:?}: expected an http:// or https:// URL of a chat-completions endpoint, e.g. https://api.openai.com/v1/chat/completions",
                self.shown_url()
            ));
        }
        let parts = UrlParts::of(&self.url);
        if parts.userinfo {
            return Err(format!(
                "llm.url = {:?}: credentials in the URL (`user:password@`) end up in logs and error messages; remove them and name the variable holding the key in llm.api_key_env",
                self.shown_url()
            ));
        }
        if !https && self.api_key_env.is_some() && !is_loopback(parts.host) {
            return Err(format!(
                "llm.url = {:?}: plain http would send the API key unencrypted; use https (http is accepted for loopback addresses — 127.0.0.0/8, ::1 — and localhost only)",
                self.shown_url()
            ));
        }
        if self.model.trim().is_empty() {
            return Err("llm.model is empty; name the model the endpoint serves".into());
        }
        if let Some(var) = &self.api_key_env
            && (var.is_empty() || var.contains('='))
        {
            return Err(format!(
                "llm.api_key_env = {var:?} is not an environment variable name"
            ));
        }
        for (key, value) in [
            ("token_budget", self.token_budget),
            ("max_tokens", u64::from(self.max_tokens)),
            ("max_calls", u64::from(self.max_calls)),
            ("timeout", self.timeout.as_millis() as u64),
        ] {
            if value == 0 {
                return Err(format!("llm.{key} must be greater than 0"));
            }
        }
        Ok(())
    }

    /// The URL as people and strategies are shown it: a query string (which
    /// may carry a key, `?key=…`) and any `user:password@` replaced.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// The pieces of an http(s) URL that the checks need.
struct UrlParts<'a> {
    /// The host without brackets or port: `127.0.0.1`, `::1`, `example.com`.
    host: &'a str,
    /// Whether the authority has a `user[:password]@` part.
    userinfo: bool,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> UrlParts<'a> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((_, h)) => (true, h),
            None => (false, authority),
        };
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host_port.split(':').next().unwrap_or(""),
        };
        UrlParts { host, userinfo }
    }
}

/// Loopback only if the host *is* a loopback address (parsed as an IP) or
/// `localhost`: `127.0.0.1.attacker.example` is a name like any other.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `url` with credentials and the query string replaced by `…`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => authority.to_string(),
    };
    let tail = tail.split('#').next().unwrap_or("");
    let tail = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?…"),
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

/// Token counts of one completion, as the transcript records them.
pub fn tokens(completion: &LlmCompletion) -> u64 {
    u64::from(completion.prompt_tokens) + u64::from(completion.completion_tokens)
}

/// A rough token count for text: one token per four bytes, rounded up.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// One campaign's access to its endpoint during one strategy call.
pub struct Gateway {
    config: LlmConfig,
    agent: ureq::Agent,
    state: Mutex<Usage>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    /// Tokens used by the campaign, this call included.
    tokens: u64,
    /// Requests made during this strategy call.
    calls: u32,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("url", &self.config.shown_url())
            .field("model", &self.config.model)
            .finish()
    }
}

impl Gateway {
    /// A gateway for a campaign that has used `tokens_used` so far.
    pub fn new(config: LlmConfig, tokens_used: u64) -> Gateway {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("reagent/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Gateway {
            config,
            agent,
            state: Mutex::new(Usage {
                tokens: tokens_used,
                calls: 0,
            }),
        }
    }

    /// Tokens the campaign has used, this gateway's calls included.
    pub fn tokens_used(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).tokens
    }

    /// One chat completion, or why there is none.
    pub fn complete(
        &self,
        messages: &[LlmMessage],
        max_tokens: u32,
    ) -> Result<LlmCompletion, String> {
        let c = &self.config;
        for m in messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(format!(
                    "message role {:?} is not one of system, user, assistant",
                    truncate(&m.role, 40)
                ));
            }
        }
        let prompt_bytes: usize = messages.iter().map(|m| m.content.len() + 8).sum();
        let estimate = estimate_tokens(prompt_bytes);
        let max_tokens = {
            let mut usage = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if usage.calls >= c.max_calls {
                return Err(format!(
                    "this strategy call already made {} language-model calls, the limit (llm.max_calls)",
                    c.max_calls
                ));
            }
            let left = c.token_budget.saturating_sub(usage.tokens);
            if left == 0 {
                return Err(format!(
                    "the campaign's language-model token budget is spent ({} of {} tokens used; llm.token_budget)",
                    usage.tokens, c.token_budget
                ));
            }
            if estimate >= left {
                return Err(format!(
                    "the prompt alone is about {estimate} tokens and only {left} of the campaign's {} tokens are left (llm.token_budget)",
                    c.token_budget
                ));
            }
            if max_tokens == 0 {
                return Err("max-tokens is 0; ask for at least one token".into());
            }
            usage.calls += 1;
            u64::from(max_tokens)
                .min(u64::from(c.max_tokens))
                .min(left - estimate) as u32
        };
        let body = json!({
            "model": c.model,
            "messages": messages
                .iter()
                .map(|m| json!({"role": m.role, "content": m.content}))
                .collect::<Vec<_>>(),
            "max_tokens": max_tokens,
        });
        let key = match &c.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(format!(
                        "the API key variable {var} (llm.api_key_env) is not set in the environment of the reagent process"
                    ));
                }
            },
            None => None,
        };
        let mut request = self
            .agent
            .post(&c.url)
            .header("Content-Type", "application/json");
        if let Some(key) = &key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut response = request.send(&bytes[..]).map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let raw = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport(e))?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "the language-model endpoint answered HTTP {status}: {}",
                snippet(&raw)
            ));
        }
        let completion = parse_completion(&raw)?;
        let used = if completion.prompt_tokens + completion.completion_tokens > 0 {
            tokens(&completion)
        } else {
            estimate + estimate_tokens(completion.content.len())
        };
        let completion = LlmCompletion {
            // Endpoints that do not report usage are charged the estimate.
            prompt_tokens: if tokens(&completion) > 0 {
                completion.prompt_tokens
            } else {
                estimate.min(u64::from(u32::MAX)) as u32
            },
            completion_tokens: if tokens(&completion) > 0 {
                completion.completion_tokens
            } else {
                estimate_tokens(completion.content.len()).min(u64::from(u32::MAX)) as u32
            },
            content: completion.content,
        };
        let mut usage = self.state.lock().unwrap_or_else(|e| e.into_inner());
        usage.tokens = usage.tokens.saturating_add(used);
        Ok(completion)
    }

    fn transport(&self, e: ureq::Error) -> String {
        let url = &self.config.shown_url();
        match e {
            ureq::Error::Timeout(_) => format!(
                "the language-model endpoint {url} did not answer within {}s (llm.timeout)",
                self.config.timeout.as_secs_f64()
            ),
            ureq::Error::BodyExceedsLimit(limit) => format!(
                "the language-model endpoint {url} answered more than {limit} bytes; refused"
            ),
            ureq::Error::HostNotFound => {
                format!("the language-model endpoint {url}: host not found")
            }
            ureq::Error::ConnectionFailed => {
                format!("the language-model endpoint {url} is unreachable (connection failed)")
            }
            ureq::Error::Io(io) => {
                format!("the language-model endpoint {url} is unreachable: {io}")
            }
            // ureq's own words may quote the URL it was given.
            other => {
                format!("the language-model endpoint {url}: {other}").replace(&self.config.url, url)
            }
        }
    }
}

/// Reads a chat-completions response body: `choices[0].message.content`
/// and `usage.{prompt,completion}_tokens` (zero when absent).
pub fn parse_completion(raw: &[u8]) -> Result<LlmCompletion, String> {
    let json: Json = serde_json::from_slice(raw).map_err(|e| {
        format!(
            "the language-model endpoint answered something that is not JSON ({e}): {}",
            snippet(raw)
        )
    })?;
    let choice = json
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| {
            let error = json
                .get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .map(|m| format!(" (its error: {})", truncate(&m.to_string(), 300)))
                .unwrap_or_default();
            format!("the language-model endpoint's answer has no choices[0]{error}; is the URL a chat-completions endpoint?")
        })?;
    let content = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Json::as_str)
        .ok_or("the language-model endpoint's answer has no choices[0].message.content string")?;
    if content.len() > MAX_CONTENT_BYTES {
        return Err(format!(
            "the language-model answer is {} bytes; strategies get at most {MAX_CONTENT_BYTES}",
            content.len()
        ));
    }
    let count = |key: &str| {
        json.get("usage")
            .and_then(|u| u.get(key))
            .and_then(Json::as_u64)
            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
    };
    Ok(LlmCompletion {
        content: content.to_string(),
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
    })
}

/// The start of a body, printable, for error messages.
fn snippet(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(200)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if raw.len() > 200 {
        format!("{:?}…", text.trim())
    } else {
        format!("{:?}", text.trim())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, key: Option<&str>) -> LlmConfig {
        LlmConfig {
            url: url.into(),
            model: "m".into(),
            api_key_env: key.map(str::to_string),
            token_budget: 10,
            max_tokens: 10,
            max_calls: 1,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_key_is_never_sent_over_plain_http_to_another_machine() {
        assert!(
            config("http://example.com/v1/chat/completions", Some("K"))
                .check()
                .unwrap_err()
                .contains("unencrypted")
        );
        for ok in [
            "http://127.0.0.1:8080/v1/chat/completions",
            "http://localhost/x",
            "http://[::1]:9/x",
            "https://example.com/v1/chat/completions",
        ] {
            assert_eq!(config(ok, Some("K")).check(), Ok(()), "{ok}");
        }
        // A name that starts like a loopback address is a name (the old
        // check took `starts_with("127.")` and accepted this one).
        for bad in [
            "http://127.0.0.1.attacker.example/v1",
            "http://127.0.0.1.attacker.example:80/v1",
            "http://localhost.attacker.example/",
            "http://[::2]/x",
        ] {
            let e = config(bad, Some("K")).check().unwrap_err();
            assert!(e.contains("unencrypted"), "{bad}: {e}");
        }
        assert_eq!(config("http://127.8.9.10/x", Some("K")).check(), Ok(()));
        assert!(config("ftp://x", None).check().is_err());
        // Credentials in the URL are refused, and never echoed.
        let e = config("https://bob:hunter2@example.com/v1", None)
            .check()
            .unwrap_err();
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
        assert_eq!(config("http://example.com/x", None).check(), Ok(()));
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            redact_url("https://bob:pw@example.com:8443/v1/chat?key=SECRET#frag"),
            "https://…@example.com:8443/v1/chat?…"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/v1/chat/completions"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        let g = Gateway::new(config("https://example.com/x?api_key=SECRET", None), 0);
        assert!(!format!("{g:?}").contains("SECRET"));
    }

    #[test]
    fn completions_are_read_from_the_chat_shape() {
        let ok = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let c = parse_completion(ok).unwrap();
        assert_eq!(
            (c.content.as_str(), c.prompt_tokens, c.completion_tokens),
            ("hi", 3, 1)
        );
        assert!(
            parse_completion(b"<html>502</html>")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_completion(br#"{"error":{"message":"bad key"}}"#)
                .unwrap_err()
                .contains("bad key")
        );
        assert!(
            parse_completion(br#"{"choices":[{"message":{"content":7}}]}"#)
                .unwrap_err()
                .contains("content string")
        );
    }
}
