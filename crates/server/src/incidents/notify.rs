//! Sending pages: email over `[smtp]` (lettre), an IRC private message to the person plus a highlight in the
//! incident room (through the robot's connection), and room steps. Each attempt's outcome is an
//! `incident.notified` event (channel, person, result and reason); a failed one is retried with backoff in
//! its own task, so a slow or dead peer never holds up the escalation's next step.

use crate::chat::Chat;
use crate::oncall::config::{Smtp, SmtpTls};
use crate::oncall::{OncallConfig, Recipient};
use crate::state::Platform;
use crate::timeline::Timeline;
use crew_core::{kind, Actor, Channel, Delivery, NewEvent, Via};
use crew_store::Incident;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Attempts per notification, and the first pause between them (doubling).
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

/// Signed one-time acknowledgement links for emails: `/ack/{id}.{expiry}.{person}.{signature}`, HMAC-SHA256
/// under a secret the replicas share (kept in the store). A link acknowledges as its person while the incident
/// is triggered and the link has not expired; after that it only says what became of the incident.
#[derive(Clone)]
pub struct AckLinks {
    store: Arc<dyn crew_store::Store>,
    key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
}

/// How long an emailed link works.
pub const ACK_LINK_HOURS: i64 = 24;

impl AckLinks {
    pub fn new(store: Arc<dyn crew_store::Store>) -> Self {
        AckLinks { store, key: Arc::new(tokio::sync::OnceCell::new()) }
    }

    async fn key(&self) -> Result<&[u8], crate::error::ApiError> {
        let k = self
            .key
            .get_or_try_init(|| async {
                let s = self.store.server_secret("ack-links", &crate::auth::random_id()).await?;
                Ok::<_, crate::error::ApiError>(s.into_bytes())
            })
            .await?;
        Ok(k)
    }

    fn sign(key: &[u8], payload: &str) -> String {
        use hmac::{Mac, SimpleHmac};
        let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The link's token for `person` to acknowledge incident `id`.
    pub async fn token(
        &self,
        id: i64,
        person: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, crate::error::ApiError> {
        use base64::Engine;
        let exp = (now + chrono::Duration::hours(ACK_LINK_HOURS)).timestamp();
        let who = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(person);
        let payload = format!("{id}.{exp}.{who}");
        Ok(format!("{payload}.{}", Self::sign(self.key().await?, &payload)))
    }

    /// The incident and person a token names, if its signature holds and it has not expired.
    pub async fn verify(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(i64, String), crate::error::ApiError> {
        use base64::Engine;
        let bad = || crate::error::ApiError::NotFound("this acknowledgement link is not valid".into());
        let (payload, sig) = token.rsplit_once('.').ok_or_else(bad)?;
        let expected = Self::sign(self.key().await?, payload);
        if !crate::auth::same_secret(Some(sig), &expected) {
            return Err(bad());
        }
        let mut parts = payload.splitn(3, '.');
        let (Some(id), Some(exp), Some(who)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        let (id, exp): (i64, i64) = (id.parse().map_err(|_| bad())?, exp.parse().map_err(|_| bad())?);
        if now.timestamp() > exp {
            return Err(crate::error::ApiError::Conflict(format!(
                "this link expired ({ACK_LINK_HOURS} hours after it was sent): acknowledge on the incident's page"
            )));
        }
        let who = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(who).map_err(|_| bad())?;
        Ok((id, String::from_utf8(who).map_err(|_| bad())?))
    }
}

#[derive(Clone)]
pub struct Notifier {
    timeline: Timeline,
    chat: Chat,
    config: Arc<OncallConfig>,
    mailer: Option<Arc<Mailer>>,
    pub links: AckLinks,
    base: String,
    shutdown: tokio_util::sync::CancellationToken,
}

/// The SMTP transport, built once.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(s: &Smtp) -> Result<Mailer, String> {
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let builder = match s.tls {
            SmtpTls::None => T::builder_dangerous(&s.host),
            SmtpTls::StartTls => T::starttls_relay(&s.host).map_err(|e| format!("smtp.server: {e}"))?,
            SmtpTls::Tls => T::relay(&s.host).map_err(|e| format!("smtp.server: {e}"))?,
        };
        let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(10)));
        if let (Some(user), Some(var)) = (&s.username, &s.password_env) {
            let password = std::env::var(var).map_err(|_| format!("smtp.password_env: ${var} is not set"))?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from: Mailbox = s.from.parse().map_err(|e| format!("smtp.from: {e}"))?;
        Ok(Mailer { transport: builder.build(), from })
    }

    /// Sends one message; the outcome as a delivery result and its reason.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> (Delivery, Option<String>) {
        let to: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => return (Delivery::Refused, Some(format!("bad address {to}: {e}"))),
        };
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return (Delivery::Refused, Some(e.to_string())),
        };
        match self.transport.send(msg).await {
            Ok(_) => (Delivery::Delivered, None),
            Err(e) if e.is_permanent() => (Delivery::Refused, Some(e.to_string())),
            Err(e) => (Delivery::Failed, Some(error_chain(&e))),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// One message to hand over.
#[derive(Debug, Clone)]
struct Page {
    incident: Option<i64>,
    channel: Channel,
    person: Option<String>,
    /// An email address, a nick, or a room.
    to: String,
    subject: String,
    text: String,
}

impl Notifier {
    pub fn new(p: &Platform, timeline: Timeline, chat: Chat) -> Self {
        let config = Arc::new(p.settings.oncall.clone());
        let mailer = config.smtp.as_ref().and_then(|s| match Mailer::new(s) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::error!(error = %e, "email pages are off");
                None
            }
        });
        let links = AckLinks::new(p.store.clone());
        Notifier { timeline, chat, config, mailer, links, base: p.base_url(), shutdown: p.shutdown.clone() }
    }

    /// Sends step `step`'s pages for `inc` to `recipients`, each in its own task.
    pub fn send(&self, inc: &Incident, step: i64, recipients: Vec<Recipient>) {
        self.send_because(inc, step, recipients, None)
    }

    /// As [`Notifier::send`], each page saying `because` (why this person: "your deploy #12 ...").
    pub fn send_because(&self, inc: &Incident, step: i64, recipients: Vec<Recipient>, because: Option<&str>) {
        let tag = if inc.drill { "DRILL " } else { "" };
        let url = format!("{}/incidents/{}", self.base, inc.id);
        let runbook = inc.runbook.as_deref().map(|r| {
            let h = super::runbook_href(r);
            if h.starts_with('/') {
                format!("{}{h}", self.base)
            } else {
                h
            }
        });
        let mut line = format!("{tag}#{} [{}] {}", inc.id, inc.severity, inc.summary);
        let subject = format!("[crew] {tag}#{} {}", inc.id, inc.summary);
        let why = because.map(|b| format!("{b}\n")).unwrap_or_default();
        let body = format!(
            "{line}\n\n{why}Triggered: {}\nSource: {}\nIncident: {url}\n{}\nAcknowledge: open the incident's page, \
             run `crew incident ack {}`, or say `!ack {}` in chat. Nobody else is paged once you do.\n",
            crew_core::time::rfc3339(inc.triggered_at),
            inc.source,
            runbook.as_deref().map(|r| format!("Runbook: {r}\n")).unwrap_or_default(),
            inc.id,
            inc.id,
        );
        if let Some(b) = because {
            line = format!("{line} ({})", b.trim_end_matches('.'));
        }
        let room = self.config.room.clone().or_else(|| self.chat.first_channel());
        let mut pages = Vec::new();
        for r in recipients {
            match r {
                Recipient::Room { name } => pages.push(Page {
                    incident: Some(inc.id),
                    channel: Channel::Room,
                    person: None,
                    to: name,
                    subject: subject.clone(),
                    text: format!("{line} — {url}"),
                }),
                Recipient::Person { name, .. } => {
                    let Some(p) = self.config.people.get(&name) else { continue };
                    for c in &p.notify {
                        match c {
                            Channel::Email => pages.push(Page {
                                incident: Some(inc.id),
                                channel: Channel::Email,
                                person: Some(name.clone()),
                                to: p.email.clone().unwrap_or_default(),
                                subject: subject.clone(),
                                text: body.clone(),
                            }),
                            Channel::Chat => pages.push(Page {
                                incident: Some(inc.id),
                                channel: Channel::Chat,
                                person: Some(name.clone()),
                                to: p.irc.clone().unwrap_or_default(),
                                subject: subject.clone(),
                                text: format!("{line} — {url} — reply !ack {} in a channel of mine", inc.id),
                            }),
                            Channel::Room | Channel::Im => {}
                        }
                    }
                    if let (true, Some(mention)) = (p.notify.contains(&Channel::Chat), &p.im) {
                        pages.push(Page {
                            incident: Some(inc.id),
                            channel: Channel::Im,
                            person: Some(name.clone()),
                            to: mention.clone(),
                            subject: subject.clone(),
                            text: format!("{line} — {url} — !ack {}", inc.id),
                        });
                    }
                    if p.notify.contains(&Channel::Chat) {
                        if let Some(room) = &room {
                            pages.push(Page {
                                incident: Some(inc.id),
                                channel: Channel::Room,
                                person: Some(name.clone()),
                                to: room.clone(),
                                subject: subject.clone(),
                                text: format!("{{nick}}: {line} — {url} — !ack {}", inc.id),
                            });
                        }
                    }
                }
            }
        }
        for page in pages {
            let me = self.clone();
            let (id, drill) = (inc.id, inc.drill);
            tokio::spawn(async move { me.deliver(id, step, drill, page).await });
        }
    }

    async fn deliver(&self, id: i64, step: i64, drill: bool, mut page: Page) {
        let mut wait = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let (result, reason) = self.attempt(&mut page).await;
            let last = attempt == ATTEMPTS || result != Delivery::Failed;
            let who = page.person.clone().unwrap_or_else(|| page.to.clone());
            let retry = if last { String::new() } else { format!("; trying again in {}s", wait.as_secs()) };
            let summary = match &reason {
                None => format!("#{id} {} page to {who}: {result}", page.channel),
                Some(r) => format!("#{id} {} page to {who}: {result} ({r}){retry}", page.channel),
            };
            let e = NewEvent::new(
                Actor::new("crew", Via::Scheduler),
                kind::INCIDENT_NOTIFIED,
                &super::subject(id),
                summary,
            )
            .with_data(json!({
                "incident": id, "step": step, "channel": page.channel, "person": page.person, "to": page.to,
                "result": result, "reason": reason, "attempt": attempt, "drill": drill,
            }));
            if let Err(e) = self.timeline.append_system(vec![e]).await {
                tracing::warn!(error = %e, "a notification's outcome was not recorded");
            }
            if last {
                return;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait *= 2;
        }
    }

    async fn attempt(&self, page: &mut Page) -> (Delivery, Option<String>) {
        match page.channel {
            Channel::Email => match &self.mailer {
                None => (Delivery::Failed, Some("crew.toml has no working [smtp]".into())),
                Some(_) if page.to.is_empty() => (Delivery::Refused, Some("the person has no email".into())),
                Some(m) => {
                    let mut text = page.text.clone();
                    if let (Some(p), Some(id)) = (page.person.as_deref(), page.incident) {
                        match self.links.token(id, p, chrono::Utc::now()).await {
                            Ok(t) => text.push_str(&format!(
                                "\nAcknowledge with one click ({ACK_LINK_HOURS} h): {}/ack/{t}\n",
                                self.base
                            )),
                            Err(e) => tracing::warn!(error = %e, "no acknowledgement link in the email"),
                        }
                    }
                    m.send(&page.to, &page.subject, text).await
                }
            },
            Channel::Chat => {
                if page.to.is_empty() {
                    match page.person.as_deref() {
                        Some(p) => match self.chat.nick_of(p).await {
                            Some(n) => page.to = n,
                            None => {
                                return (
                                    Delivery::Refused,
                                    Some(format!("{p} has no IRC nick: set [people.{p}] irc or crew chat link")),
                                )
                            }
                        },
                        None => return (Delivery::Refused, Some("nobody to message".into())),
                    }
                }
                self.chat.page(&page.to, &page.text).await
            }
            Channel::Im => match self.chat.page_im(&page.to, &page.text) {
                Ok(_) => (Delivery::Delivered, None),
                Err(e) => (Delivery::Failed, Some(e)),
            },
            Channel::Room => {
                if page.text.contains("{nick}") {
                    let nick = match page.person.as_deref() {
                        Some(p) => self.chat.nick_of(p).await.unwrap_or_else(|| p.to_string()),
                        None => String::new(),
                    };
                    page.text = page.text.replace("{nick}", &nick);
                }
                self.chat.page(&page.to, &page.text).await
            }
        }
    }
}
