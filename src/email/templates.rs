//! The transactional emails, in the recipient's language. Messages live in
//! `templates/email/messages.toml`; minijinja renders them, escaping
//! everything in the HTML part.

use std::collections::HashMap;
use std::sync::LazyLock;

use minijinja::{AutoEscape, Environment, Value};
use serde::Deserialize;

const MESSAGES: &str = include_str!("../../templates/email/messages.toml");
const LAYOUT: &str = include_str!("../../templates/email/layout.html");

#[derive(Deserialize)]
struct Message {
    subject: String,
    text: String,
    html: String,
}

/// The kinds of email, named as in `messages.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TicketConfirmed,
    PaymentReceived,
    Refund,
    EventCancelled,
    PasswordReset,
    Announcement,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TicketConfirmed => "ticket_confirmed",
            Kind::PaymentReceived => "payment_received",
            Kind::Refund => "refund",
            Kind::EventCancelled => "event_cancelled",
            Kind::PasswordReset => "password_reset",
            Kind::Announcement => "announcement",
        }
    }
}

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

static ENVIRONMENT: LazyLock<Result<Environment<'static>, String>> = LazyLock::new(build);

fn build() -> Result<Environment<'static>, String> {
    let messages: HashMap<String, HashMap<String, Message>> =
        toml::from_str(MESSAGES).map_err(|e| format!("templates/email/messages.toml: {e}"))?;
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.add_template_owned("layout.html", LAYOUT.to_string())
        .map_err(|e| e.to_string())?;
    for (kind, locales) in messages {
        for (locale, message) in locales {
            let name = |part: &str| format!("{kind}.{locale}.{part}");
            env.add_template_owned(name("subject"), message.subject)
                .map_err(|e| e.to_string())?;
            env.add_template_owned(name("txt"), message.text)
                .map_err(|e| e.to_string())?;
            env.add_template_owned(name("html"), message.html)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(env)
}

/// Renders `kind` in `locale` ("es" unless "en"). `trusted_html` holds HTML
/// the server made itself (the QR table), inserted unescaped.
pub fn render(
    kind: Kind,
    locale: &str,
    context: Value,
    trusted_html: Option<String>,
) -> Result<Rendered, String> {
    let env = ENVIRONMENT.as_ref().map_err(Clone::clone)?;
    let locale = if locale == "en" { "en" } else { "es" };
    let name = |part: &str| format!("{}.{locale}.{part}", kind.as_str());
    let render = |part: &str, ctx: &Value| -> Result<String, String> {
        env.get_template(&name(part))
            .and_then(|t| t.render(ctx))
            .map_err(|e| e.to_string())
    };

    let mut context = context;
    if let Some(html) = trusted_html {
        context = minijinja::context! { qr => Value::from_safe_string(html), ..context };
    }
    // A subject is one line: whatever a user typed cannot add a header.
    let subject = render("subject", &context)?
        .replace(['\r', '\n'], " ")
        .trim()
        .to_string();
    let text = render("txt", &context)?;
    let content = render("html", &context)?;
    let html = env
        .get_template("layout.html")
        .and_then(|t| t.render(minijinja::context! { locale, subject => &subject, content => Value::from_safe_string(content) }))
        .map_err(|e| e.to_string())?;
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

/// The check-in code as a QR drawn with an HTML table: mail clients show
/// tables where they block images and strip SVG.
pub fn qr_table(code: &str) -> Option<String> {
    let qr = qrcode::QrCode::new(code.as_bytes()).ok()?;
    let width = qr.width();
    let colors = qr.to_colors();
    let mut html = String::from(
        r#"<table cellpadding="0" cellspacing="0" style="border-collapse: collapse; border: 8px solid #fff;">"#,
    );
    for row in colors.chunks(width) {
        html.push_str("<tr>");
        for color in row {
            let fill = if *color == qrcode::Color::Dark {
                "#000"
            } else {
                "#fff"
            };
            html.push_str(&format!(
                r#"<td style="width:4px;height:4px;padding:0;background:{fill}"></td>"#
            ));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    Some(html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn every_message_renders_in_both_languages() {
        for kind in [
            Kind::TicketConfirmed,
            Kind::PaymentReceived,
            Kind::Refund,
            Kind::EventCancelled,
            Kind::PasswordReset,
            Kind::Announcement,
        ] {
            for locale in ["es", "en"] {
                let ctx = context! { name => "Ana", event => "Noche", subject => "Hola", body => "texto", amount => "PYG 50000", total => "PYG 50000", link => "https://x.example/r", starts => "2027-01-15 19:00", location => "Café", code => "SPG1.x.y", provider => "STRIPE", reason => "" };
                let rendered = render(kind, locale, ctx, Some("<table></table>".into())).unwrap();
                assert!(
                    !rendered.subject.is_empty() && rendered.html.contains("<html"),
                    "{kind:?} {locale}"
                );
            }
        }
    }

    #[test]
    fn user_text_is_escaped_in_html_and_subjects_stay_one_line() {
        let ctx = context! { name => "<script>alert(1)</script>", subject => "Hi\r\nBcc: victim@example.org", body => "<b>bold</b>" };
        let rendered = render(Kind::Announcement, "en", ctx, None).unwrap();
        assert!(!rendered.html.contains("<script>"));
        assert!(rendered.html.contains("&lt;script&gt;"));
        assert!(!rendered.subject.contains('\n') && !rendered.subject.contains('\r'));
        assert!(
            rendered.text.contains("<b>bold</b>"),
            "the text part is not HTML"
        );
    }

    #[test]
    fn spanish_is_the_default_and_english_is_chosen_by_locale() {
        let ctx = context! { name => "Ana", link => "https://x.example/r" };
        assert!(
            render(Kind::PasswordReset, "es", ctx.clone(), None)
                .unwrap()
                .subject
                .contains("contraseña")
        );
        assert!(
            render(Kind::PasswordReset, "en", ctx.clone(), None)
                .unwrap()
                .subject
                .contains("password")
        );
        assert!(
            render(Kind::PasswordReset, "fr", ctx, None)
                .unwrap()
                .subject
                .contains("contraseña")
        );
    }
}
