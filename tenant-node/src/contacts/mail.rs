//! Outgoing email: invitation links sent through the configured SMTP relay.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpConfig;
use crate::error::{Error, Result};

pub struct InvitationMail<'a> {
    pub to: &'a str,
    pub inviter: &'a str,
    pub company: &'a str,
    pub link: &'a str,
    pub qr_png: &'a [u8],
}

/// Checks an address before anything is stored or sent.
pub fn parse_address(address: &str) -> Result<Mailbox> {
    address.trim().parse::<Mailbox>().map_err(|e| {
        Error::invalid(
            "email",
            format!(
                "{:?} is not an email address: {e}",
                works_bridge::error::clip(address)
            ),
        )
    })
}

pub async fn send_invitation(smtp: &SmtpConfig, mail: InvitationMail<'_>) -> Result<()> {
    let to = parse_address(mail.to)?;
    let from = smtp
        .from
        .parse::<Mailbox>()
        .map_err(|e| Error::Internal(format!("smtp.from in the config: {e}")))?;
    let text = format!(
        "{} ({}) invites you to be their contact.\n\nOpen this link in your messenger, or scan the attached QR code:\n\n{}\n",
        mail.inviter, mail.company, mail.link
    );
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(format!("{} invites you to connect", mail.inviter))
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text))
                .singlepart(Attachment::new("invitation.png".into()).body(
                    mail.qr_png.to_vec(),
                    ContentType::parse("image/png").map_err(|e| Error::Internal(e.to_string()))?,
                )),
        )
        .map_err(|e| Error::Internal(format!("invitation email: {e}")))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(10)))
        .build();
    transport.send(message).await.map_err(|e| {
        Error::Unavailable(format!(
            "the mail server {}:{} refused the invitation: {e}",
            smtp.host, smtp.port
        ))
    })?;
    Ok(())
}
