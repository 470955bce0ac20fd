//! The authorization matrix: every operation × every relationship to the
//! conversation → the answer PROTOCOL.md and docs/decisions.md promise.
//!
//! The matrix is a table of rows (who acts, what they do, what the answer
//! must be) run against one fixture, and every mismatching row is reported
//! at once, so a regression shows its whole shape rather than its first
//! symptom. Beside it, removal is checked to take effect at once on every
//! socket of the removed member while the others keep receiving.

use std::fmt;

use serde_json::{json, Value};

use crate::backend_tests;

mod fixture;
mod matrix;
use crate::helpers::*;
use fixture::{group_events, Fixture};
use matrix::matrix;

/// The fixture's users, by their relationship to the group (or to the
/// private pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Owner,
    Admin,
    /// A second admin, for "an admin removes another admin".
    Admin2,
    Member,
    /// A second plain member, for "a member removes another member".
    Member2,
    /// Was a member; the owner removed them (after they had received a
    /// message, so any cached roster knew them).
    Removed,
    /// Never in the group, nor in the private pair.
    Outsider,
    /// The private pair.
    PeerA,
    PeerB,
    /// In no group: the user the add-member rows add.
    Newcomer,
    /// Blocks peer_a, after peer_a sent them a message (v1.2).
    Blocker,
}

use Who::*;

impl Who {
    const ALL: [Who; 11] = [
        Owner, Admin, Admin2, Member, Member2, Removed, Outsider, PeerA, PeerB, Newcomer, Blocker,
    ];

    fn name(self) -> &'static str {
        match self {
            Owner => "owner",
            Admin => "admin",
            Admin2 => "admin2",
            Member => "member",
            Member2 => "member2",
            Removed => "removed",
            Outsider => "outsider",
            PeerA => "peer_a",
            PeerB => "peer_b",
            Newcomer => "newcomer",
            Blocker => "blocker",
        }
    }
}

/// A user an operation names.
#[derive(Debug, Clone, Copy)]
enum UserRef {
    Is(Who),
    /// An id no user has.
    Unknown,
}

/// A group an operation names.
#[derive(Debug, Clone, Copy)]
enum GroupRef {
    /// The fixture's group (for membership changes, a fresh copy of it, so
    /// that rows do not depend on each other's order).
    Known,
    /// An id no group has.
    Unknown,
}

use GroupRef::{Known, Unknown as NoGroup};
use UserRef::{Is, Unknown as NoUser};

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Socket `message`, private; `sender_id` is the optional `senderId`.
    SendPrivate(UserRef, Option<Who>),
    /// Socket `message`, group.
    SendGroup(GroupRef, Option<Who>),
    /// GET /api/messages, private, with the given peer.
    HistoryPrivate(UserRef),
    /// GET /api/messages, group.
    HistoryGroup(GroupRef),
    /// GET /api/groups/{id}.
    GetGroup(GroupRef),
    /// POST /api/groups/{id}/members with `{userId, role}`.
    AddMember(GroupRef, UserRef, &'static str),
    /// DELETE /api/groups/{id}/members/{userId}.
    RemoveMember(GroupRef, UserRef),
    /// Socket `typing`.
    TypingPrivate(UserRef),
    TypingGroup(GroupRef),
    /// Socket `read` with a seq.
    ReadPrivate(UserRef, i64),
    ReadGroup(GroupRef, i64),
    /// Socket `edit` of seq 1 of the conversation (v1.2).
    EditPrivate(UserRef),
    EditGroup(GroupRef),
    /// Socket `react` on seq 1 of the conversation (v1.2).
    ReactPrivate(UserRef),
    ReactGroup(GroupRef),
    /// Socket `delete` of a fresh group message its author just sent.
    DeleteGroup(Who),
    /// Socket `delete` of seq 1 of the conversation.
    DeletePrivate(UserRef),
    /// PATCH /api/groups/{id} (v1.2).
    Rename(GroupRef),
    /// PUT /api/groups/{id}/members/{userId}/role (v1.2).
    SetRole(GroupRef, UserRef, &'static str),
    /// POST /api/groups/{id}/owner (v1.2).
    HandOver(GroupRef, UserRef),
    /// DELETE /api/groups/{id} (v1.2).
    DeleteWhole(GroupRef),
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Is(w) => f.write_str(w.name()),
            NoUser => f.write_str("unknown user"),
        }
    }
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Known => "group",
            NoGroup => "unknown group",
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spoof = |s: &Option<Who>| match s {
            Some(w) => format!(" with senderId={}", w.name()),
            None => String::new(),
        };
        match self {
            Op::SendPrivate(to, s) => write!(f, "message private to {to}{}", spoof(s)),
            Op::SendGroup(g, s) => write!(f, "message to {g}{}", spoof(s)),
            Op::HistoryPrivate(to) => write!(f, "GET /api/messages private with {to}"),
            Op::HistoryGroup(g) => write!(f, "GET /api/messages {g}"),
            Op::GetGroup(g) => write!(f, "GET /api/groups/{{{g}}}"),
            Op::AddMember(g, u, role) => write!(f, "POST {g} members {u} as {role}"),
            Op::RemoveMember(g, u) => write!(f, "DELETE {g} member {u}"),
            Op::TypingPrivate(to) => write!(f, "typing private to {to}"),
            Op::TypingGroup(g) => write!(f, "typing {g}"),
            Op::ReadPrivate(to, seq) => write!(f, "read private with {to} seq {seq}"),
            Op::ReadGroup(g, seq) => write!(f, "read {g} seq {seq}"),
            Op::EditPrivate(to) => write!(f, "edit private with {to} seq 1"),
            Op::EditGroup(g) => write!(f, "edit {g} seq 1"),
            Op::ReactPrivate(to) => write!(f, "react private with {to} seq 1"),
            Op::ReactGroup(g) => write!(f, "react {g} seq 1"),
            Op::DeleteGroup(author) => write!(f, "delete {}'s group message", author.name()),
            Op::DeletePrivate(to) => write!(f, "delete private with {to} seq 1"),
            Op::Rename(g) => write!(f, "PATCH {g} name"),
            Op::SetRole(g, u, role) => write!(f, "PUT {g} member {u} role {role}"),
            Op::HandOver(g, u) => write!(f, "POST {g} owner {u}"),
            Op::DeleteWhole(g) => write!(f, "DELETE {g}"),
        }
    }
}

/// An answer, as expected or as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The success answer (and, for history, the conversation's messages).
    Ok,
    /// History answered 200 but without the conversation's messages: the
    /// caller read a conversation of their own, not the one asked about.
    Hidden,
    /// An error with this code (and, over HTTP, its status).
    Code(String),
    /// Anything else, described.
    Other(String),
}

const OK: Outcome = Outcome::Ok;
const HIDDEN: Outcome = Outcome::Hidden;

fn code(c: &str) -> Outcome {
    Outcome::Code(c.to_string())
}

fn forbidden() -> Outcome {
    code("forbidden")
}

fn not_found() -> Outcome {
    code("not_found")
}

fn conflict() -> Outcome {
    code("conflict")
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Hidden => f.write_str("ok, but none of the conversation's messages"),
            Outcome::Code(c) => f.write_str(c),
            Outcome::Other(s) => f.write_str(s),
        }
    }
}

/// The HTTP status that goes with an error code.
fn status_of(code: &str) -> Option<u16> {
    Some(match code {
        "invalid_payload" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "not_found" => 404,
        "conflict" => 409,
        "too_large" => 413,
        "rate_limited" => 429,
        "internal" => 500,
        "unavailable" => 503,
        _ => return None,
    })
}

/// Reads an HTTP answer: `success` is the status the operation answers on
/// success.
fn http_outcome(success: u16, status: u16, body: &Value) -> Outcome {
    if status == success {
        return Outcome::Ok;
    }
    match body["error"]["code"].as_str() {
        Some(c) if status_of(c) == Some(status) => code(c),
        _ => Outcome::Other(format!("HTTP {status} {body}")),
    }
}

/// Reads an ack.
fn ack_outcome(ack: &Value) -> Outcome {
    match (&ack["ok"], ack["error"]["code"].as_str()) {
        (Value::Bool(true), _) => Outcome::Ok,
        (Value::Bool(false), Some(c)) => code(c),
        _ => Outcome::Other(format!("ack {ack}")),
    }
}

async fn authorization_matrix_gives_the_contracts_answer_for_every_row(b: Backend) {
    // The fixture remakes its groups hundreds of times a minute: the group
    // change limit (tests/api/limits.rs) is not what this checks.
    let app = spawn_configured(b, |c| c.group_changes_per_minute = 0).await;
    let mut fx = Fixture::new(&app).await;
    let rows = matrix();
    let mut mismatches = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let got = fx.run(&app, r.actor, r.op).await;
        if got != r.expect {
            mismatches.push(format!(
                "  row {i:>3}: {:<8} {:<52} expected {}, got {}",
                r.actor.name(),
                r.op.to_string(),
                r.expect,
                got
            ));
        }
    }
    // Nothing about the group ever reached those outside it, though the
    // rows above sent, typed and read in it.
    let group = fx.group;
    for who in [Removed, Outsider] {
        for (name, data) in group_events(fx.socket_mut(who), group).await {
            mismatches.push(format!(
                "  {} received `{name}` {data} from a group they are not in",
                who.name()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} authorization rows disagree with the contract:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n")
    );
}

/// Complements messaging.rs's removal test (two sockets of the removed
/// member, sent to by the remover): here the group has other members, and
/// they must keep receiving messages and typing while neither of the
/// removed member's sockets gets anything, from the moment the DELETE
/// returns.
async fn removed_member_stops_receiving_on_every_socket_while_the_others_still_do(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let admin = app.register("admin").await;
    let member = app.register("member").await;
    let leaving = app.register("leaving").await;
    let g = app
        .group(&owner, "g", &[member.id(), leaving.id(), admin.id()])
        .await;
    let o1 = app.connect(&owner.token).await;
    let mut o2 = app.connect(&owner.token).await;
    let mut ad = app.connect(&admin.token).await;
    let mut m = app.connect(&member.token).await;
    let mut l1 = app.connect(&leaving.token).await;
    let mut l2 = app.connect(&leaving.token).await;

    // Everyone, both of the leaving member's sockets included, receives
    // (and any roster cache now holds the leaving member).
    let before = send_ok(&m, group_msg(g, "before")).await;
    for s in [&mut o2, &mut ad, &mut l1, &mut l2] {
        assert_eq!(next_message(s).await, before);
    }

    let (s, body) = app
        .delete(
            &format!("/api/groups/{g}/members/{}", leaving.id()),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 204, "{body}");

    // Everyone, the removed member on both sockets too, is told.
    let removed = next_system(&mut o2, "member_removed").await;
    assert_eq!(removed.sender_id, owner.id());
    assert_eq!(removed.system.as_ref().unwrap().user_id, Some(leaving.id()));
    for s in [&mut ad, &mut m, &mut l1, &mut l2] {
        assert_eq!(next_message(s).await, removed);
    }

    // At once: the remaining members (and the sender's other socket) get
    // it, the removed member on neither socket.
    let after = send_ok(&o1, group_msg(g, "after")).await;
    for s in [&mut o2, &mut ad, &mut m] {
        assert_eq!(next_message(s).await, after);
    }
    let from_member = send_ok(&m, group_msg(g, "from a member")).await;
    assert_eq!(next_message(&mut ad).await, from_member);
    let typing = json!({"conversationType": "group", "receiverId": g, "typing": true});
    assert_eq!(m.emit_ack("typing", &typing).await.unwrap()["ok"], true);
    loop {
        let (name, data) = ad.next_event_timeout(WAIT).await.expect("typing relayed");
        if name == "typing" {
            assert_eq!(data["sender_id"], member.id());
            break;
        }
    }
    for s in [&mut l1, &mut l2] {
        let stray = group_events(s, g).await;
        assert!(stray.is_empty(), "removed member still receives: {stray:?}");
    }

    // Nor may they send, from either socket; nothing is stored.
    for s in [&l1, &l2] {
        assert_eq!(send_err(s, group_msg(g, "still here?")).await, "forbidden");
    }
    let stored = app.history(&owner, "group", g, 0).await;
    assert_eq!(
        stored.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![before.id, removed.id, after.id, from_member.id]
    );
    // The removed member reads up to their removal, and no further.
    let theirs = app.history(&leaving, "group", g, 0).await;
    assert_eq!(
        theirs.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![before.id, removed.id]
    );
}

backend_tests!(
    authorization_matrix_gives_the_contracts_answer_for_every_row,
    removed_member_stops_receiving_on_every_socket_while_the_others_still_do,
);
