//! What outside code asks of a running node, through [`super::AppHandle`]'s bounded command
//! channel, and how the actor carries each out.

use fedanno_protocol::ids::SiteId;
use fedanno_protocol::wire::{Cosignature, Gossip, Request, Response, SignedCheckpoint};
use tokio::sync::oneshot;

use super::context::Context;
use super::members::MemberInfo;
use super::outbound::Release;
use super::status::{self, Status};
use super::{AppError, witness};
use crate::network::kinds::MessageKind;
use crate::reader_studies::network::Command as ReaderStudyCommand;

type Reply<T> = oneshot::Sender<Result<T, AppError>>;

pub(crate) enum AppCommand {
    Status(Reply<Status>),
    Peers(oneshot::Sender<Vec<MemberInfo>>),
    Notice {
        to: SiteId,
        topic: String,
        body: String,
        reply: Reply<()>,
    },
    Broadcast {
        topic: String,
        body: String,
        reply: Reply<()>,
    },
    Checkpoint(Reply<SignedCheckpoint>),
    Witness {
        to: SiteId,
        reply: Reply<Cosignature>,
    },
    /// Sign and publish a checkpoint, and ask every connected member to co-sign it.
    WitnessRound(Reply<Vec<Cosignature>>),
    GetCheckpoint {
        from: SiteId,
        reply: Reply<SignedCheckpoint>,
    },
    /// Install the revocation list in these bytes (None: re-read the site's list file).
    Revocations {
        list: Option<Vec<u8>>,
        reply: Reply<Option<u64>>,
    },
    ReaderStudy(ReaderStudyCommand),
    /// An auditor's node fetches a site's log (`audit fetch`).
    AuditFetch {
        from: SiteId,
        reply: Reply<super::auditors::Fetched>,
    },
}

pub(super) async fn execute(cx: &Context, c: AppCommand) {
    match c {
        AppCommand::Status(reply) => {
            let _ = reply.send(status::status(cx).await);
        }
        AppCommand::Peers(reply) => {
            let _ = reply.send(cx.members().all());
        }
        AppCommand::Notice {
            to,
            topic,
            body,
            reply,
        } => {
            let _ = reply.send(notice(cx, &to, topic, body).await);
        }
        AppCommand::Broadcast { topic, body, reply } => {
            let g = Gossip::Notice { topic, body };
            let _ = reply.send(cx.publish(MessageKind::Notice, &g).await);
        }
        AppCommand::Checkpoint(reply) => {
            let _ = reply.send(cx.checkpoint().await);
        }
        AppCommand::Witness { to, reply } => {
            let asked = async {
                let cp = cx.audit().checkpoint().await?;
                witness::ask_cosignature(cx, &to, &cp).await
            };
            let _ = reply.send(asked.await);
        }
        AppCommand::WitnessRound(reply) => {
            let _ = reply.send(witness::witness_round(cx).await);
        }
        AppCommand::GetCheckpoint { from, reply } => {
            let _ = reply.send(witness::fetch_checkpoint(cx, &from).await);
        }
        AppCommand::Revocations { list, reply } => {
            let _ = reply.send(cx.reload_revocations(list).await);
        }
        AppCommand::ReaderStudy(c) => crate::reader_studies::network::execute(cx, c).await,
        AppCommand::AuditFetch { from, reply } => {
            let _ = reply.send(super::auditors::fetch(cx, &from).await);
        }
    }
}

/// Sends a notice to one member and checks its receipt.
async fn notice(cx: &Context, to: &SiteId, topic: String, body: String) -> Result<(), AppError> {
    let req = Request::Notice { topic, body };
    match cx
        .request(to, MessageKind::Notice, &Release::default(), &req, None)
        .await?
    {
        Response::Receipt { .. } => Ok(()),
        Response::Refused { reason } => Err(AppError::Refused(format!("{reason:?}"))),
        _ => Err(AppError::BadReply("unexpected response to a notice".into())),
    }
}
