//! A notification as a plain-text e-mail to the person's address, through the operator's SMTP
//! server (lettre: STARTTLS, implicit TLS, or none for a server on this machine).

use std::time::Duration;

use lettre::{
    message::header::ContentType,
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use pier_core::{repo::notify::Due, Pier};

pub async fn deliver(pier: &Pier, d: &Due) -> Result<(), String> {
    let Some((smtp, password)) = pier
        .smtp_with_password()
        .await
        .map_err(|e| e.public_message())?
    else {
        return Err("the operator has not set a mail server".into());
    };
    let hosts = &pier.settings().notify.hosts;
    let port = u16::try_from(smtp.port).unwrap_or(587);
    if !hosts.is_empty() && !pier_core::notify::listed(hosts, &smtp.host, port) {
        return Err("the mail server is not on this server's list of hosts any more".into());
    }
    let tls = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(smtp.host.clone());
        if let Some(ca) = &pier.settings().notify.smtp_ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("the mail server's CA file: {e}"))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("the mail server's CA file: {e}"))?;
            b = b.add_root_certificate(cert);
        }
        b.build()
            .map_err(|e| format!("the mail server's TLS settings: {e}"))
    };
    let base = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host);
    let builder = match smtp.security.as_str() {
        // Implicit TLS (port 465), or STARTTLS that must succeed: never plain text after all.
        "tls" => base.tls(Tls::Wrapper(tls()?)),
        "starttls" => base.tls(Tls::Required(tls()?)),
        _ => base,
    };
    let mut builder = builder.port(port).timeout(Some(Duration::from_secs(20)));
    if let (Some(user), Some(pw)) = (smtp.username.clone(), password) {
        builder = builder.credentials(Credentials::new(user, pw));
    }
    let mailer = builder.build();
    let from = smtp
        .from_address
        .parse()
        .map_err(|e| format!("the sender address: {e}"))?;
    let to = d
        .email
        .parse()
        .map_err(|e| format!("the recipient address: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(format!("[Pier] {}", d.subject))
        .header(ContentType::TEXT_PLAIN)
        .body(format!(
            "{}\n\n-- \nPier · {}\nChoose what reaches you on your account page.\n",
            d.body,
            pier_core::format_time(d.created_at)
        ))
        .map_err(|e| format!("the message could not be made: {e}"))?;
    mailer
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("the mail server refused it: {e}"))
}
