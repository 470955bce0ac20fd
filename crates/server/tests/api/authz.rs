//! The authorization matrix: every operation × every relationship to the
//! conversation → the answer PROTOCOL.md and docs/decisions.md promise.
//!
//! The matrix is a table of rows (who acts, what they do, what the answer
//! must be) run against one fixture, and every mismatching row is reported
//! at once, so a regression shows its whole shape rather than its first
//! symptom. Beside it, removal is checked to take effect at once on every
//! socket of the removed member while the others keep receiving.

use std::fmt;

use palaver_client::Client;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

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

struct Row {
    actor: Who,
    op: Op,
    expect: Outcome,
}

fn row(actor: Who, op: Op, expect: Outcome) -> Row {
    Row { actor, op, expect }
}

/// The matrix. Sources: PROTOCOL.md (send, typing, read, history, groups)
/// and docs/decisions.md (roles: only the owner adds admins, the owner
/// removes anyone, an admin only plain members).
fn matrix() -> Vec<Row> {
    use Op::*;
    let group_roles = [(Owner, OK), (Admin, OK), (Member, OK)];
    let outside = [(Removed, forbidden()), (Outsider, forbidden())];
    let mut rows = vec![
        // message, private: any existing user, yourself included.
        row(PeerA, SendPrivate(Is(PeerB), None), OK),
        row(PeerB, SendPrivate(Is(PeerA), None), OK),
        row(PeerA, SendPrivate(Is(PeerA), None), OK),
        row(Outsider, SendPrivate(Is(PeerA), None), OK),
        row(Removed, SendPrivate(Is(Owner), None), OK),
        row(PeerA, SendPrivate(NoUser, None), not_found()),
        // senderId must be the authenticated user.
        row(PeerA, SendPrivate(Is(PeerB), Some(PeerA)), OK),
        row(PeerA, SendPrivate(Is(PeerB), Some(PeerB)), forbidden()),
        row(Outsider, SendPrivate(Is(PeerB), Some(PeerA)), forbidden()),
        row(PeerA, SendPrivate(Is(PeerA), Some(PeerB)), forbidden()),
        // message, group.
        row(Member, SendGroup(NoGroup, None), not_found()),
        row(Member, SendGroup(Known, Some(Member)), OK),
        row(Member, SendGroup(Known, Some(Owner)), forbidden()),
        row(Admin, SendGroup(Known, Some(Owner)), forbidden()),
        row(Removed, SendGroup(Known, Some(Member)), forbidden()),
        row(Outsider, SendGroup(Known, Some(Owner)), forbidden()),
        // history, private: the conversation is {caller, receiverId}, so
        // an outsider naming a peer reads their own (empty) conversation.
        row(PeerA, HistoryPrivate(Is(PeerB)), OK),
        row(PeerB, HistoryPrivate(Is(PeerA)), OK),
        row(PeerA, HistoryPrivate(Is(PeerA)), OK),
        row(Outsider, HistoryPrivate(Is(PeerA)), HIDDEN),
        row(Outsider, HistoryPrivate(Is(PeerB)), HIDDEN),
        row(PeerA, HistoryPrivate(NoUser), not_found()),
        row(Member, HistoryGroup(NoGroup), not_found()),
        row(Member, GetGroup(NoGroup), not_found()),
        // typing, private.
        row(PeerA, TypingPrivate(Is(PeerB)), OK),
        row(PeerA, TypingPrivate(Is(PeerA)), OK),
        row(Outsider, TypingPrivate(Is(PeerA)), OK),
        row(PeerA, TypingPrivate(NoUser), not_found()),
        row(Member, TypingGroup(NoGroup), not_found()),
        // read, private: the pair's seq 1 exists; the outsider's own
        // conversation with peer_b is empty, so only seq 0 is valid there.
        row(PeerB, ReadPrivate(Is(PeerA), 1), OK),
        row(PeerA, ReadPrivate(Is(PeerA), 1), OK),
        row(Outsider, ReadPrivate(Is(PeerB), 0), OK),
        row(Outsider, ReadPrivate(Is(PeerB), 1), code("invalid_payload")),
        row(PeerA, ReadPrivate(NoUser, 0), not_found()),
        row(Member, ReadGroup(NoGroup, 0), not_found()),
    ];
    // Every relationship to the group, for each group operation.
    for (who, expect) in group_roles.iter().chain(&outside) {
        for op in [
            SendGroup(Known, None),
            HistoryGroup(Known),
            GetGroup(Known),
            TypingGroup(Known),
            ReadGroup(Known, 1),
        ] {
            // A removed member still reads the history up to their
            // removal (v1.2), the marker sent before it included.
            let expect = match (who, op) {
                (Removed, HistoryGroup(_)) => OK,
                _ => expect.clone(),
            };
            rows.push(row(*who, op, expect));
        }
    }
    // The message life cycle (v1.2). Seq 1 of the group is the owner's;
    // of the pair, peer_a's; the outsider has no message with peer_b.
    rows.extend([
        row(Owner, EditGroup(Known), OK),
        row(PeerA, EditPrivate(Is(PeerB)), OK),
        row(PeerB, EditPrivate(Is(PeerA)), forbidden()),
        row(Outsider, EditPrivate(Is(PeerB)), not_found()),
        row(Member, EditGroup(NoGroup), not_found()),
        row(PeerB, ReactPrivate(Is(PeerA)), OK),
        row(PeerA, ReactPrivate(Is(PeerB)), OK),
        row(Outsider, ReactPrivate(Is(PeerB)), not_found()),
        row(PeerB, DeletePrivate(Is(PeerA)), forbidden()),
        row(Outsider, DeletePrivate(Is(PeerB)), not_found()),
        // Deleting: one's own message, or as the group's owner or an
        // admin anyone's; a plain member no one else's.
        row(Member, DeleteGroup(Member), OK),
        row(Owner, DeleteGroup(Member), OK),
        row(Admin, DeleteGroup(Member), OK),
        row(Admin, DeleteGroup(Owner), OK),
        row(Member, DeleteGroup(Member2), forbidden()),
        row(Member, DeleteGroup(Admin), forbidden()),
        row(Member, DeleteGroup(Owner), forbidden()),
        row(Removed, DeleteGroup(Member), forbidden()),
        row(Outsider, DeleteGroup(Member), forbidden()),
        // A block stops writes to the pair's private conversation, both
        // ways; reading it stays allowed.
        row(PeerA, SendPrivate(Is(Blocker), None), forbidden()),
        row(Blocker, SendPrivate(Is(PeerA), None), forbidden()),
        row(PeerA, TypingPrivate(Is(Blocker)), forbidden()),
        row(Blocker, TypingPrivate(Is(PeerA)), forbidden()),
        row(PeerA, EditPrivate(Is(Blocker)), forbidden()),
        row(Blocker, ReactPrivate(Is(PeerA)), forbidden()),
        row(PeerA, ReactPrivate(Is(Blocker)), forbidden()),
        row(Blocker, ReadPrivate(Is(PeerA), 1), OK),
    ]);
    for (who, expect) in group_roles.iter().chain(&outside) {
        rows.push(row(*who, ReactGroup(Known), expect.clone()));
    }
    for who in [Admin, Member, Removed, Outsider] {
        rows.push(row(who, EditGroup(Known), forbidden()));
    }
    // Adding: the owner adds members and admins, an admin only members.
    let add = |role| AddMember(Known, Is(Newcomer), role);
    rows.extend([
        row(Owner, add("member"), OK),
        row(Owner, add("admin"), OK),
        row(Admin, add("member"), OK),
        row(Admin, add("admin"), forbidden()),
        row(Member, add("member"), forbidden()),
        row(Member, add("admin"), forbidden()),
        row(Removed, add("member"), forbidden()),
        row(Outsider, add("member"), forbidden()),
        row(
            Outsider,
            AddMember(Known, Is(Outsider), "member"),
            forbidden(),
        ),
        row(
            Removed,
            AddMember(Known, Is(Removed), "member"),
            forbidden(),
        ),
        row(Owner, AddMember(Known, Is(Removed), "member"), OK),
        row(Admin, AddMember(Known, Is(Removed), "member"), OK),
        row(
            Owner,
            AddMember(Known, Is(Member), "member"),
            code("conflict"),
        ),
        row(Owner, AddMember(Known, NoUser, "member"), not_found()),
        row(
            Owner,
            AddMember(NoGroup, Is(Newcomer), "member"),
            not_found(),
        ),
        row(Owner, add("owner"), code("invalid_payload")),
    ]);
    // Removing: the owner removes anyone, an admin only plain members,
    // anyone leaves; a non-member has no say.
    let remove = |who| RemoveMember(Known, Is(who));
    rows.extend([
        row(Owner, remove(Admin), OK),
        row(Owner, remove(Member), OK),
        row(Owner, remove(Outsider), not_found()),
        row(Owner, remove(Removed), not_found()),
        row(Owner, RemoveMember(Known, NoUser), not_found()),
        row(Admin, remove(Member), OK),
        row(Admin, remove(Admin2), forbidden()),
        row(Admin, remove(Owner), forbidden()),
        row(Member, remove(Member2), forbidden()),
        row(Member, remove(Admin), forbidden()),
        row(Member, remove(Owner), forbidden()),
        // Refused before the target is looked up: the same answer for a
        // user who is not in the group, or does not exist.
        row(Member, remove(Outsider), forbidden()),
        row(Member, RemoveMember(Known, NoUser), forbidden()),
        row(Outsider, remove(Member), forbidden()),
        row(Removed, remove(Member), forbidden()),
        // The owner leaves only as the last member (v1.2).
        row(Owner, remove(Owner), conflict()),
        row(Admin, remove(Admin), OK),
        row(Member, remove(Member), OK),
        row(Outsider, remove(Outsider), forbidden()),
        row(Removed, remove(Removed), forbidden()),
        row(Owner, RemoveMember(NoGroup, Is(Member)), not_found()),
    ]);
    // Running a group (v1.2): owner and admins rename; only the owner
    // gives roles, hands the group over and deletes it.
    let role = |who, r| SetRole(Known, Is(who), r);
    let hand = |who| HandOver(Known, Is(who));
    rows.extend([
        row(Owner, Rename(Known), OK),
        row(Admin, Rename(Known), OK),
        row(Member, Rename(Known), forbidden()),
        row(Removed, Rename(Known), forbidden()),
        row(Outsider, Rename(Known), forbidden()),
        row(Owner, Rename(NoGroup), not_found()),
        row(Owner, role(Member, "admin"), OK),
        row(Owner, role(Admin, "member"), OK),
        row(Owner, role(Member, "member"), OK),
        row(Owner, role(Owner, "admin"), conflict()),
        row(Owner, role(Member, "owner"), code("invalid_payload")),
        row(Owner, role(Outsider, "admin"), not_found()),
        row(Owner, role(Removed, "admin"), not_found()),
        row(Admin, role(Member, "admin"), forbidden()),
        row(Admin, role(Admin2, "member"), forbidden()),
        row(Member, role(Member2, "admin"), forbidden()),
        row(Outsider, role(Member, "admin"), forbidden()),
        row(Owner, SetRole(NoGroup, Is(Member), "admin"), not_found()),
        row(Owner, hand(Admin), OK),
        row(Owner, hand(Member), OK),
        row(Owner, hand(Owner), OK),
        row(Owner, hand(Outsider), not_found()),
        row(Owner, hand(Removed), not_found()),
        row(Owner, HandOver(Known, NoUser), not_found()),
        row(Admin, hand(Member), forbidden()),
        row(Member, hand(Member), forbidden()),
        row(Removed, hand(Removed), forbidden()),
        row(Owner, HandOver(NoGroup, Is(Member)), not_found()),
        row(Owner, DeleteWhole(Known), OK),
        row(Admin, DeleteWhole(Known), forbidden()),
        row(Member, DeleteWhole(Known), forbidden()),
        row(Removed, DeleteWhole(Known), forbidden()),
        row(Outsider, DeleteWhole(Known), forbidden()),
        row(Owner, DeleteWhole(NoGroup), not_found()),
    ]);
    rows
}

/// Ids no user or group has.
const NO_SUCH_ID: i64 = 987_654;

/// One of everybody, each with a connected socket, a group of the shape
/// [`Who`] describes and a private conversation between the pair.
struct Fixture {
    users: Vec<TestUser>,
    sockets: Vec<Client>,
    group: i64,
    /// A message in the group, sent before `Removed` was removed.
    group_marker: i64,
    /// A message from peer_a to peer_b.
    pair_marker: i64,
    /// A note peer_a sent to themselves.
    self_marker: i64,
}

impl Fixture {
    async fn new(app: &TestApp) -> Fixture {
        let mut users = Vec::new();
        let mut sockets = Vec::new();
        for who in Who::ALL {
            let user = app.register(who.name()).await;
            sockets.push(app.connect(&user.token).await);
            users.push(user);
        }
        let mut fx = Fixture {
            users,
            sockets,
            group: 0,
            group_marker: 0,
            pair_marker: 0,
            self_marker: 0,
        };
        let (group, marker) = fx.build_group(app, true).await;
        fx.group = group;
        fx.group_marker = marker.expect("marker sent");
        // The removed member did get the message sent while a member,
        // then the system messages of the admins' arrival and of their
        // own removal (v1.2), and nothing after.
        let seen = next_message(fx.socket_mut(Removed)).await;
        assert_eq!(seen.id, fx.group_marker);
        next_system(fx.socket_mut(Removed), "member_added").await;
        next_system(fx.socket_mut(Removed), "member_added").await;
        next_system(fx.socket_mut(Removed), "member_removed").await;
        fx.pair_marker = send_ok(fx.socket(PeerA), private(fx.id(PeerB), "pair"))
            .await
            .id;
        fx.self_marker = send_ok(fx.socket(PeerA), private(fx.id(PeerA), "note"))
            .await
            .id;
        send_ok(
            fx.socket(PeerA),
            private(fx.id(Blocker), "before the block"),
        )
        .await;
        let path = format!("/api/blocks/{}", fx.id(PeerA));
        let (s, body) = app.post(&path, Some(fx.token(Blocker)), json!({})).await;
        assert_eq!(s, 204, "fixture: block: {body}");
        fx
    }

    fn user(&self, who: Who) -> &TestUser {
        &self.users[who as usize]
    }

    fn id(&self, who: Who) -> i64 {
        self.user(who).id()
    }

    fn token(&self, who: Who) -> &str {
        &self.user(who).token
    }

    fn socket(&self, who: Who) -> &Client {
        &self.sockets[who as usize]
    }

    fn socket_mut(&mut self, who: Who) -> &mut Client {
        &mut self.sockets[who as usize]
    }

    fn user_id(&self, r: UserRef) -> i64 {
        match r {
            Is(w) => self.id(w),
            NoUser => NO_SUCH_ID,
        }
    }

    /// A group with the owner, admins, plain members and a removed member.
    /// With `warm`, the owner sends a message before the removal, so that
    /// any roster cache holds the removed member; returns its id.
    async fn build_group(&self, app: &TestApp, warm: bool) -> (i64, Option<i64>) {
        let members = [self.id(Member), self.id(Member2), self.id(Removed)];
        let g = app.group(self.user(Owner), "matrix", &members).await;
        // Seq 1, before the system messages of the admins' arrival.
        let marker = if warm {
            Some(send_ok(self.socket(Owner), group_msg(g, "before")).await.id)
        } else {
            None
        };
        for admin in [Admin, Admin2] {
            let (s, body) = app
                .post(
                    &format!("/api/groups/{g}/members"),
                    Some(self.token(Owner)),
                    json!({"userId": self.id(admin), "role": "admin"}),
                )
                .await;
            assert_eq!(s, 201, "fixture: add {}: {body}", admin.name());
        }
        let (s, body) = app
            .delete(
                &format!("/api/groups/{g}/members/{}", self.id(Removed)),
                Some(self.token(Owner)),
            )
            .await;
        assert_eq!(s, 204, "fixture: remove: {body}");
        (g, marker)
    }

    /// The group a row names: membership changes get a fresh copy of the
    /// fixture's group.
    async fn group_for(&self, app: &TestApp, g: GroupRef, mutates: bool) -> i64 {
        match g {
            NoGroup => NO_SUCH_ID,
            Known if mutates => self.build_group(app, false).await.0,
            Known => self.group,
        }
    }

    /// Runs one row and reads its answer.
    async fn run(&self, app: &TestApp, actor: Who, op: Op) -> Outcome {
        let token = Some(self.token(actor));
        let socket = self.socket(actor);
        let emit = |event: &'static str, payload: Value| async move {
            match socket.emit_ack(event, &payload).await {
                Ok(ack) => ack_outcome(&ack),
                Err(e) => Outcome::Other(format!("no ack: {e}")),
            }
        };
        let with_sender = |mut payload: Value, sender: Option<Who>| {
            if let Some(s) = sender {
                payload["senderId"] = json!(self.id(s));
            }
            payload
        };
        match op {
            Op::SendPrivate(to, sender) => {
                let p = private(self.user_id(to), "matrix");
                emit("message", with_sender(p, sender)).await
            }
            Op::SendGroup(g, sender) => {
                let p = group_msg(self.group_for(app, g, false).await, "matrix");
                emit("message", with_sender(p, sender)).await
            }
            Op::HistoryPrivate(to) => {
                let marker = if to_is(to, PeerA) && actor == PeerA {
                    self.self_marker
                } else {
                    self.pair_marker
                };
                self.history(app, token, "private", self.user_id(to), marker)
                    .await
            }
            Op::HistoryGroup(g) => {
                let g = self.group_for(app, g, false).await;
                self.history(app, token, "group", g, self.group_marker)
                    .await
            }
            Op::GetGroup(g) => {
                let g = self.group_for(app, g, false).await;
                let (s, body) = app.get(&format!("/api/groups/{g}"), token).await;
                http_outcome(200, s, &body)
            }
            Op::AddMember(g, user, role) => {
                let g = self.group_for(app, g, true).await;
                let (s, body) = app
                    .post(
                        &format!("/api/groups/{g}/members"),
                        token,
                        json!({"userId": self.user_id(user), "role": role}),
                    )
                    .await;
                http_outcome(201, s, &body)
            }
            Op::RemoveMember(g, user) => {
                let g = self.group_for(app, g, true).await;
                let path = format!("/api/groups/{g}/members/{}", self.user_id(user));
                let (s, body) = app.delete(&path, token).await;
                http_outcome(204, s, &body)
            }
            Op::TypingPrivate(to) => {
                let p = json!({"conversationType": "private",
                               "receiverId": self.user_id(to), "typing": true});
                emit("typing", p).await
            }
            Op::TypingGroup(g) => {
                let g = self.group_for(app, g, false).await;
                let p = json!({"conversationType": "group", "receiverId": g, "typing": true});
                emit("typing", p).await
            }
            Op::ReadPrivate(to, seq) => {
                let p = json!({"conversationType": "private",
                               "receiverId": self.user_id(to), "seq": seq});
                emit("read", p).await
            }
            Op::ReadGroup(g, seq) => {
                let g = self.group_for(app, g, false).await;
                let p = json!({"conversationType": "group", "receiverId": g, "seq": seq});
                emit("read", p).await
            }
            Op::EditPrivate(to) => {
                let p = json!({"conversationType": "private", "receiverId": self.user_id(to),
                               "seq": 1, "content": format!("edited by {}", actor.name())});
                emit("edit", p).await
            }
            Op::EditGroup(g) => {
                let g = self.group_for(app, g, false).await;
                let p = json!({"conversationType": "group", "receiverId": g, "seq": 1,
                               "content": format!("edited by {}", actor.name())});
                emit("edit", p).await
            }
            Op::ReactPrivate(to) => {
                let p = json!({"conversationType": "private", "receiverId": self.user_id(to),
                               "seq": 1, "emoji": "👀"});
                emit("react", p).await
            }
            Op::ReactGroup(g) => {
                let g = self.group_for(app, g, false).await;
                let p = json!({"conversationType": "group", "receiverId": g, "seq": 1,
                               "emoji": "👀"});
                emit("react", p).await
            }
            Op::DeleteGroup(author) => {
                let fresh = send_ok(self.socket(author), group_msg(self.group, "to delete")).await;
                let p = json!({"conversationType": "group", "receiverId": self.group,
                               "seq": fresh.seq});
                emit("delete", p).await
            }
            Op::DeletePrivate(to) => {
                let p = json!({"conversationType": "private", "receiverId": self.user_id(to),
                               "seq": 1});
                emit("delete", p).await
            }
            Op::Rename(g) => {
                let g = self.group_for(app, g, true).await;
                let body = json!({"name": format!("renamed by {}", actor.name())});
                let (s, body) = app.patch(&format!("/api/groups/{g}"), token, body).await;
                http_outcome(200, s, &body)
            }
            Op::SetRole(g, user, role) => {
                let g = self.group_for(app, g, true).await;
                let path = format!("/api/groups/{g}/members/{}/role", self.user_id(user));
                let (s, body) = app.put(&path, token, json!({"role": role})).await;
                http_outcome(200, s, &body)
            }
            Op::HandOver(g, user) => {
                let g = self.group_for(app, g, true).await;
                let body = json!({"userId": self.user_id(user)});
                let (s, body) = app
                    .post(&format!("/api/groups/{g}/owner"), token, body)
                    .await;
                http_outcome(200, s, &body)
            }
            Op::DeleteWhole(g) => {
                let g = self.group_for(app, g, true).await;
                let (s, body) = app.delete(&format!("/api/groups/{g}"), token).await;
                http_outcome(204, s, &body)
            }
        }
    }

    /// A history read: `Ok` only if the page holds `marker`.
    async fn history(
        &self,
        app: &TestApp,
        token: Option<&str>,
        kind: &str,
        receiver: i64,
        marker: i64,
    ) -> Outcome {
        let path = format!(
            "/api/messages?conversationType={kind}&receiverId={receiver}&afterSeq=0&limit=200"
        );
        let (s, body) = app.get(&path, token).await;
        match http_outcome(200, s, &body) {
            Outcome::Ok => {
                let ids: Vec<i64> = body["messages"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["id"].as_i64()).collect())
                    .unwrap_or_default();
                if ids.contains(&marker) {
                    Outcome::Ok
                } else {
                    Outcome::Hidden
                }
            }
            other => other,
        }
    }
}

fn to_is(r: UserRef, who: Who) -> bool {
    matches!(r, Is(w) if w == who)
}

/// Events about `group` that reached `client` since the last look.
async fn group_events(client: &mut Client, group: i64) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    while let Some((name, data)) = client.next_event_timeout(QUIET).await {
        if data["conversation_type"] == "group" && data["receiver_id"] == group {
            seen.push((name, data));
        }
    }
    seen
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
