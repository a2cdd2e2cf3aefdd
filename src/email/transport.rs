//! Delivering one email: to the log, over SMTP (lettre), or through the
//! HTTP APIs of Resend and Postmark.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;

use super::entity as email;
use crate::config::{Config, Secret};

const RESEND_API: &str = "https://api.resend.com";
const POSTMARK_API: &str = "https://api.postmarkapp.com";

pub enum Transport {
    Log {
        show_bodies: bool,
    },
    Smtp {
        mailer: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Resend {
        http: reqwest::Client,
        key: Secret,
        base: String,
        from: String,
    },
    Postmark {
        http: reqwest::Client,
        token: Secret,
        base: String,
        from: String,
    },
}

fn required<'a>(value: Option<&'a Secret>, name: &str) -> anyhow::Result<&'a Secret> {
    value.ok_or_else(|| anyhow::anyhow!("{name} is required for EMAIL_TRANSPORT"))
}

/// `smtp://` without a `tls` parameter upgrades with STARTTLS when the
/// server offers it; `?tls=required` insists; `smtps://` is TLS from the
/// first byte.
fn smtp_url(url: &str) -> String {
    if url.starts_with("smtp://") && !url.contains("tls=") {
        let joiner = if url.contains('?') { '&' } else { '?' };
        return format!("{url}{joiner}tls=opportunistic");
    }
    url.to_string()
}

impl Transport {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from = || {
            config
                .email_from
                .clone()
                .ok_or_else(|| anyhow::anyhow!("EMAIL_FROM is required to send email"))
        };
        let http = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
        };
        Ok(match config.email_transport.as_str() {
            "smtp" => {
                let url = smtp_url(required(config.smtp_url.as_ref(), "SMTP_URL")?.expose());
                let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
                    .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build();
                let from = from()?
                    .parse()
                    .map_err(|e| anyhow::anyhow!("EMAIL_FROM: {e}"))?;
                Transport::Smtp { mailer, from }
            }
            "resend" => Transport::Resend {
                http: http()?,
                key: required(config.resend_api_key.as_ref(), "RESEND_API_KEY")?.clone(),
                base: config
                    .email_api_base
                    .clone()
                    .unwrap_or_else(|| RESEND_API.into())
                    .trim_end_matches('/')
                    .into(),
                from: from()?,
            },
            "postmark" => Transport::Postmark {
                http: http()?,
                token: required(
                    config.postmark_server_token.as_ref(),
                    "POSTMARK_SERVER_TOKEN",
                )?
                .clone(),
                base: config
                    .email_api_base
                    .clone()
                    .unwrap_or_else(|| POSTMARK_API.into())
                    .trim_end_matches('/')
                    .into(),
                from: from()?,
            },
            _ => Transport::Log {
                show_bodies: config.is_development(),
            },
        })
    }

    pub async fn send(&self, message: &email::Model) -> Result<(), String> {
        match self {
            // Bodies carry check-in codes and reset links: only a development
            // log, on a developer's own machine, shows them.
            Transport::Log { show_bodies: true } => {
                tracing::info!(email.id = %message.id, email.to = %message.to_address, subject = %message.subject, body = %message.body, "email (log transport)");
                Ok(())
            }
            Transport::Log { show_bodies: false } => {
                tracing::info!(email.id = %message.id, email.to = %message.to_address, subject = %message.subject, "email (log transport)");
                Ok(())
            }
            Transport::Smtp { mailer, from } => {
                let to: Mailbox = message
                    .to_address
                    .parse()
                    .map_err(|e| format!("recipient: {e}"))?;
                let body = MultiPart::alternative_plain_html(
                    message.body.clone(),
                    message.body_html.clone().unwrap_or_default(),
                );
                let email = lettre::Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(message.subject.clone())
                    .multipart(body)
                    .map_err(|e| e.to_string())?;
                mailer
                    .send(email)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Transport::Resend {
                http,
                key,
                base,
                from,
            } => {
                let body = json!({
                    "from": from, "to": [message.to_address], "subject": message.subject,
                    "text": message.body, "html": message.body_html,
                });
                let request = http
                    .post(format!("{base}/emails"))
                    .bearer_auth(key.expose())
                    .header("Idempotency-Key", message.id.to_string());
                check(request.json(&body).send().await).await
            }
            Transport::Postmark {
                http,
                token,
                base,
                from,
            } => {
                let body = json!({
                    "From": from, "To": message.to_address, "Subject": message.subject,
                    "TextBody": message.body, "HtmlBody": message.body_html, "MessageStream": "outbound",
                });
                let request = http
                    .post(format!("{base}/email"))
                    .header("Accept", "application/json")
                    .header("X-Postmark-Server-Token", token.expose());
                check(request.json(&body).send().await).await
            }
        }
    }
}

async fn check(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), String> {
    let response = response.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    Err(format!(
        "{status}: {}",
        text.chars().take(300).collect::<String>()
    ))
}
