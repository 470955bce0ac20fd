//! The authorization matrix's fixture: one user of each relationship with
//! a connected socket, the group they stand in, and how each operation of
//! the matrix is run and its answer read.

use palaver_client::Client;
use serde_json::{json, Value};

use super::{
    ack_outcome, http_outcome, GroupRef, GroupRef::Known, GroupRef::Unknown as NoGroup, Op,
    Outcome, UserRef, UserRef::Is, UserRef::Unknown as NoUser, Who, Who::*,
};
use crate::helpers::*;

/// Ids no user or group has.
pub(super) const NO_SUCH_ID: i64 = 987_654;

/// One of everybody, each with a connected socket, a group of the shape
/// [`Who`] describes and a private conversation between the pair.
pub(super) struct Fixture {
    users: Vec<TestUser>,
    sockets: Vec<Client>,
    pub(super) group: i64,
    /// A message in the group, sent before `Removed` was removed.
    group_marker: i64,
    /// A message from peer_a to peer_b.
    pair_marker: i64,
    /// A note peer_a sent to themselves.
    self_marker: i64,
}

impl Fixture {
    pub(super) async fn new(app: &TestApp) -> Fixture {
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

    pub(super) fn user(&self, who: Who) -> &TestUser {
        &self.users[who as usize]
    }

    pub(super) fn id(&self, who: Who) -> i64 {
        self.user(who).id()
    }

    pub(super) fn token(&self, who: Who) -> &str {
        &self.user(who).token
    }

    pub(super) fn socket(&self, who: Who) -> &Client {
        &self.sockets[who as usize]
    }

    pub(super) fn socket_mut(&mut self, who: Who) -> &mut Client {
        &mut self.sockets[who as usize]
    }

    pub(super) fn user_id(&self, r: UserRef) -> i64 {
        match r {
            Is(w) => self.id(w),
            NoUser => NO_SUCH_ID,
        }
    }

    /// A group with the owner, admins, plain members and a removed member.
    /// With `warm`, the owner sends a message before the removal, so that
    /// any roster cache holds the removed member; returns its id.
    pub(super) async fn build_group(&self, app: &TestApp, warm: bool) -> (i64, Option<i64>) {
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
    pub(super) async fn group_for(&self, app: &TestApp, g: GroupRef, mutates: bool) -> i64 {
        match g {
            NoGroup => NO_SUCH_ID,
            Known if mutates => self.build_group(app, false).await.0,
            Known => self.group,
        }
    }

    /// Runs one row and reads its answer.
    pub(super) async fn run(&self, app: &TestApp, actor: Who, op: Op) -> Outcome {
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
    pub(super) async fn history(
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
pub(super) async fn group_events(client: &mut Client, group: i64) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    while let Some((name, data)) = client.next_event_timeout(QUIET).await {
        if data["conversation_type"] == "group" && data["receiver_id"] == group {
            seen.push((name, data));
        }
    }
    seen
}
