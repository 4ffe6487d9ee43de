//! The transport to LINE's Messaging API for the company's Official
//! Account: the channel's credentials, the HTTPS client, and the calls the
//! node makes (push, profiles, group summaries, message content). It knows
//! nothing of rooms or members; `outbox::line` and the `line` edge use it.
//!
//! **Invariant:** the channel secret and access token are read from their
//! files once, kept here, and never logged or shown (`Debug` hides them).

use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::LineConfig;

/// A request to LINE gives up after this long (a hung platform).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The company's LINE channel, ready to call.
pub struct Channel {
    pub channel_id: String,
    pub basic_id: String,
    api: String,
    data_api: String,
    secret: Secret,
    token: Secret,
    http: reqwest::Client,
}

struct Secret(String);

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("channel_id", &self.channel_id)
            .field("basic_id", &self.basic_id)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// How a call to LINE went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// LINE refused the request for good (400, 401, 403, 404): its message.
    Refused { status: u16, message: String },
    /// Try again later: a 429 or 5xx (with LINE's `Retry-After`, if any),
    /// or LINE did not answer.
    Later {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The same retry key was accepted before: the push went out already.
    AlreadyAccepted,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused { status, message } => {
                write!(f, "LINE refused it ({status}): {message}")
            }
            CallError::Later { reason, .. } => write!(f, "LINE is unavailable: {reason}"),
            CallError::AlreadyAccepted => write!(f, "LINE accepted it before"),
        }
    }
}

/// A LINE user's profile as LINE shows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineProfile {
    pub display_name: String,
    pub user_id: String,
    #[serde(default)]
    pub picture_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    pub group_id: String,
    pub group_name: String,
}

/// Bytes LINE holds for a message (an image, a file) and their type.
pub struct Content {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    property: String,
}

impl Channel {
    /// Reads the credentials the config names (relative to `data_dir`).
    pub fn open(config: &LineConfig, data_dir: &Path) -> anyhow::Result<Channel> {
        let read = |what: &str, file: &Path| -> anyhow::Result<Secret> {
            let path = LineConfig::path(data_dir, file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("cannot read the LINE {what} file {}: {e}", path.display())
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    anyhow::bail!(
                        "the LINE {what} file {} can be read by others (mode {mode:03o}): chmod 600 it",
                        path.display()
                    );
                }
            }
            let text = text.trim().to_string();
            if text.is_empty() {
                anyhow::bail!("the LINE {what} file {} is empty", path.display());
            }
            Ok(Secret(text))
        };
        let secret = read("channel secret", &config.channel_secret_file)?;
        let token = read("access token", &config.access_token_file)?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Channel {
            channel_id: config.channel_id.trim().to_string(),
            basic_id: config.basic_id.trim().to_string(),
            api: config.api_base_url.trim_end_matches('/').to_string(),
            data_api: config.data_api_base_url.trim_end_matches('/').to_string(),
            secret,
            token,
            http,
        })
    }

    /// Whether `signature` (the `x-line-signature` header) is LINE's
    /// HMAC-SHA256 of `body` under the channel secret; compared in
    /// constant time.
    pub fn signed(&self, body: &[u8], signature: &str) -> bool {
        use base64::Engine;
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.secret.0.as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    }

    /// A key of this channel's for signing what the node links to (file
    /// links sent to LINE users): HMAC-SHA256 of `what` under the secret.
    pub fn link_tag(&self, what: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.0.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"works-line-link\0");
        mac.update(what.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// `POST /v2/bot/message/push` with `body` (`{to, messages}`) and the
    /// retry key, so that a push sent again after a lost answer is not
    /// shown twice.
    pub async fn push(&self, body: &serde_json::Value, retry_key: &str) -> Result<(), CallError> {
        let response = self
            .http
            .post(format!("{}/v2/bot/message/push", self.api))
            .bearer_auth(&self.token.0)
            .header("X-Line-Retry-Key", retry_key)
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        if response.status().as_u16() == 409 {
            return Err(CallError::AlreadyAccepted);
        }
        checked(response).await.map(|_| ())
    }

    pub async fn profile(&self, user_id: &str) -> Result<LineProfile, CallError> {
        self.get_json(&format!("{}/v2/bot/profile/{user_id}", self.api))
            .await
    }

    pub async fn group_member_profile(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<LineProfile, CallError> {
        self.get_json(&format!(
            "{}/v2/bot/group/{group_id}/member/{user_id}",
            self.api
        ))
        .await
    }

    pub async fn group_summary(&self, group_id: &str) -> Result<GroupSummary, CallError> {
        self.get_json(&format!("{}/v2/bot/group/{group_id}/summary", self.api))
            .await
    }

    /// What a LINE user sent (an image, a video, a file), from the data host.
    pub async fn content(&self, message_id: &str, max_bytes: usize) -> Result<Content, CallError> {
        let response = self
            .http
            .get(format!(
                "{}/v2/bot/message/{message_id}/content",
                self.data_api
            ))
            .bearer_auth(&self.token.0)
            .send()
            .await
            .map_err(unreachable)?;
        read_content(checked(response).await?, max_bytes).await
    }

    /// Any URL LINE gave (a profile picture), fetched without credentials.
    pub async fn fetch_public(&self, url: &str, max_bytes: usize) -> Result<Content, CallError> {
        let response = self.http.get(url).send().await.map_err(unreachable)?;
        read_content(checked(response).await?, max_bytes).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, CallError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token.0)
            .send()
            .await
            .map_err(unreachable)?;
        let response = checked(response).await?;
        response.json::<T>().await.map_err(|e| CallError::Refused {
            status: 200,
            message: format!("an answer of an unexpected shape: {e}"),
        })
    }
}

/// A successful answer's bytes and type, refused when over `max_bytes`.
async fn read_content(response: reqwest::Response, max_bytes: usize) -> Result<Content, CallError> {
    let too_large = || CallError::Refused {
        status: 413,
        message: format!("the content is larger than {max_bytes} bytes"),
    };
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(too_large());
    }
    let bytes = response.bytes().await.map_err(unreachable)?;
    if bytes.len() > max_bytes {
        return Err(too_large());
    }
    Ok(Content {
        bytes: bytes.to_vec(),
        content_type,
    })
}

fn unreachable(e: reqwest::Error) -> CallError {
    let reason = if e.is_timeout() {
        "no answer in time".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        // reqwest's errors name the URL, never the headers.
        e.to_string()
    };
    CallError::Later {
        reason,
        retry_after: None,
    }
}

/// The response, or how it failed: 429 and 5xx are for later (with
/// `Retry-After`), anything else not 2xx is LINE's refusal with its message.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => {
            let details: Vec<String> = body
                .details
                .iter()
                .map(|d| {
                    if d.property.is_empty() {
                        d.message.clone()
                    } else {
                        format!("{}: {}", d.property, d.message)
                    }
                })
                .collect();
            if details.is_empty() {
                body.message
            } else {
                format!("{} ({})", body.message, details.join("; "))
            }
        }
        Err(_) => text.chars().take(200).collect(),
    };
    let code = status.as_u16();
    if code == 429 || status.is_server_error() {
        return Err(CallError::Later {
            reason: format!("{code}: {message}"),
            retry_after,
        });
    }
    Err(CallError::Refused {
        status: code,
        message,
    })
}

/// The retry key of what the node pushes for an event: the event id's 128
/// bits written as a UUID, so a push sent again carries the same key.
pub fn retry_key(event_id: &crate::ids::EventId) -> String {
    let bits = event_id.as_u128();
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(secret: &str) -> Channel {
        Channel {
            channel_id: "1".into(),
            basic_id: "@a".into(),
            api: String::new(),
            data_api: String::new(),
            secret: Secret(secret.into()),
            token: Secret("t".into()),
            http: reqwest::Client::new(),
        }
    }

    #[test]
    fn only_the_channel_secrets_signature_passes() {
        use base64::Engine;
        let body = br#"{"destination":"U1","events":[]}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(body);
        let good = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let c = channel("secret");
        assert!(c.signed(body, &good));
        assert!(!channel("other").signed(body, &good));
        assert!(!c.signed(b"{}", &good));
        assert!(!c.signed(body, "not base64 !"));
        assert!(!c.signed(body, ""));
        assert!(!c.signed(body, &good[..good.len() - 4]));
        // The secret never shows in debug output.
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn a_retry_key_is_a_uuid_of_the_event_id() {
        let id = crate::ids::EventId::generate();
        let key = retry_key(&id);
        let parts: Vec<&str> = key.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(key.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(key, retry_key(&id));
        assert_ne!(key, retry_key(&crate::ids::EventId::generate()));
    }
}
