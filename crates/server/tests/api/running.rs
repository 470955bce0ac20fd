//! Groups that can be run (PROTOCOL v1.2): renaming, roles, handing
//! ownership over, leaving and deleting, each recorded as a system message
//! in the group's own seq; a departed member's history ends at their
//! departure.

use palaver_protocol::{ConversationSummary, Message, MessageKind};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

/// What a system message records, as `(event, actor, user)`.
fn record(m: &Message) -> (String, i64, Option<i64>) {
    let s = m.system.as_ref().expect("a system message");
    let event = serde_json::to_value(s.event).unwrap();
    (event.as_str().unwrap().to_string(), s.actor_id, s.user_id)
}

async fn listed(app: &TestApp, who: &TestUser, group: i64) -> Option<ConversationSummary> {
    let (s, body) = app.get("/api/conversations", Some(&who.token)).await;
    assert_eq!(s, 200, "{body}");
    let list: Vec<ConversationSummary> = serde_json::from_value(body).unwrap();
    list.into_iter()
        .find(|c| c.conversation_type.as_str() == "group" && c.receiver_id == group)
}

async fn group_ids(app: &TestApp, who: &TestUser) -> Vec<i64> {
    let (s, body) = app.get("/api/groups", Some(&who.token)).await;
    assert_eq!(s, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_i64().unwrap())
        .collect()
}

async fn renaming_roles_and_handing_over_are_system_messages_in_order(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let admin = app.register("admin").await;
    let member = app.register("member").await;
    let g = app.group(&owner, "first", &[admin.id(), member.id()]).await;
    let mut m = app.connect(&member.token).await;
    let o = app.connect(&owner.token).await;
    let hello = send_ok(&o, group_msg(g, "hello")).await;
    assert_eq!(next_message(&mut m).await, hello);

    // Rename: the answer is the group as it now is; every member is told.
    let (s, body) = app
        .patch(
            &format!("/api/groups/{g}"),
            Some(&owner.token),
            json!({"name": "second"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["name"], "second");
    assert_eq!(body["members"].as_array().unwrap().len(), 3);
    let renamed = next_system(&mut m, "renamed").await;
    assert_eq!(renamed.seq, hello.seq + 1, "in the group's own seq");
    assert_eq!(
        (renamed.conversation_type.as_str(), renamed.receiver_id),
        ("group", g),
        "a system message names its group as any group message does"
    );
    assert_eq!(renamed.kind, MessageKind::System);
    assert_eq!(renamed.sender_id, owner.id());
    assert_eq!(
        renamed.system.as_ref().unwrap().name.as_deref(),
        Some("second")
    );
    assert!(renamed.content.contains("second"), "{}", renamed.content);
    // Renaming to the same name changes nothing and writes nothing.
    let (s, _) = app
        .patch(
            &format!("/api/groups/{g}"),
            Some(&owner.token),
            json!({"name": "second"}),
        )
        .await;
    assert_eq!(s, 200);
    // A bad name is refused like at creation.
    let (s, body) = app
        .patch(
            &format!("/api/groups/{g}"),
            Some(&owner.token),
            json!({"name": " "}),
        )
        .await;
    assert_eq!(
        (s, &body["error"]["code"]),
        (400, &json!("invalid_payload"))
    );

    // Roles: the owner makes the member an admin; again changes nothing.
    let role_path = format!("/api/groups/{g}/members/{}/role", member.id());
    let (s, body) = app
        .put(&role_path, Some(&owner.token), json!({"role": "admin"}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user_id"], member.id());
    assert_eq!(body["role"], "admin");
    let promoted = next_system(&mut m, "role_changed").await;
    assert_eq!(
        record(&promoted),
        ("role_changed".into(), owner.id(), Some(member.id()))
    );
    let (s, _) = app
        .put(&role_path, Some(&owner.token), json!({"role": "admin"}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .put(&role_path, Some(&owner.token), json!({"role": "boss"}))
        .await;
    assert_eq!(s, 400);

    // Handing over: the admin becomes owner, the old owner an admin.
    let (s, body) = app
        .post(
            &format!("/api/groups/{g}/owner"),
            Some(&owner.token),
            json!({"userId": admin.id()}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["owner_id"], admin.id());
    let role_of = |id: i64| {
        body["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["user_id"] == id)
            .map(|x| x["role"].clone())
    };
    assert_eq!(role_of(admin.id()), Some(json!("owner")));
    assert_eq!(role_of(owner.id()), Some(json!("admin")));
    let handed = next_system(&mut m, "owner_changed").await;
    // Handing the group to its owner changes nothing and writes nothing.
    let (s, body) = app
        .post(
            &format!("/api/groups/{g}/owner"),
            Some(&admin.token),
            json!({"userId": admin.id()}),
        )
        .await;
    assert_eq!((s, &body["owner_id"]), (200, &json!(admin.id())), "{body}");
    assert_eq!(
        record(&handed),
        ("owner_changed".into(), owner.id(), Some(admin.id()))
    );
    // The old owner no longer gives roles.
    let (s, _) = app
        .put(&role_path, Some(&owner.token), json!({"role": "member"}))
        .await;
    assert_eq!(s, 403);
    no_message(&mut m).await;

    // History holds every change, in seq order, gap-free, and a system
    // message can be neither edited nor deleted (reacting is fine).
    let history = app.history(&member, "group", g, 0).await;
    let seqs: Vec<i64> = history.iter().map(|x| x.seq).collect();
    assert_eq!(seqs, (1..=4).collect::<Vec<_>>());
    assert_eq!(history[1..], [renamed.clone(), promoted, handed]);
    assert_eq!(history[0].kind, MessageKind::Text);
    let at = |seq: i64| json!({"conversationType": "group", "receiverId": g, "seq": seq});
    let mut edit = at(renamed.seq);
    edit["content"] = json!("rewritten");
    for (event, payload) in [("edit", edit), ("delete", at(renamed.seq))] {
        let ack = o.emit_ack(event, &payload).await.unwrap();
        assert_eq!(ack["error"]["code"], "forbidden", "{event}: {ack}");
    }
    let mut react = at(renamed.seq);
    react["emoji"] = json!("👍");
    assert_eq!(o.emit_ack("react", &react).await.unwrap()["ok"], true);
    // A v1 message carries neither `kind` nor `system`.
    let (_, raw) = app
        .get(
            &format!("/api/messages?conversationType=group&receiverId={g}&afterSeq=0"),
            Some(&member.token),
        )
        .await;
    let first: &Value = &raw["messages"][0];
    assert!(
        first.get("kind").is_none() && first.get("system").is_none(),
        "{first}"
    );
    assert_eq!(raw["messages"][1]["kind"], "system");
}

async fn a_departed_member_reads_up_to_their_departure_until_added_back(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let leaver = app.register("leaver").await;
    let g = app.group(&owner, "g", &[leaver.id()]).await;
    let o = app.connect(&owner.token).await;
    let mut l = app.connect(&leaver.token).await;
    let before = send_ok(&o, group_msg(g, "before")).await;
    next_message(&mut l).await;

    let (s, _) = app
        .delete(
            &format!("/api/groups/{g}/members/{}", leaver.id()),
            Some(&leaver.token),
        )
        .await;
    assert_eq!(s, 204);
    let left = next_system(&mut l, "member_left").await;
    assert_eq!(
        record(&left),
        ("member_left".into(), leaver.id(), Some(leaver.id()))
    );
    let after = send_ok(&o, group_msg(g, "after")).await;
    no_message(&mut l).await;

    // The group is gone from their lists; its history ends at departure.
    assert!(group_ids(&app, &leaver).await.is_empty());
    assert!(listed(&app, &leaver, g).await.is_none());
    let theirs = app.history(&leaver, "group", g, 0).await;
    assert_eq!(theirs, [before.clone(), left.clone()]);
    assert!(app.history(&leaver, "group", g, left.seq).await.is_empty());
    let (s, body) = app
        .get(
            &format!("/api/messages?conversationType=group&receiverId={g}&beforeSeq=99"),
            Some(&leaver.token),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["messages"].as_array().unwrap().len(), 2, "{body}");
    // Nothing else is open to them: no sending, reading or group.
    assert_eq!(send_err(&l, group_msg(g, "still here?")).await, "forbidden");
    let read = json!({"conversationType": "group", "receiverId": g, "seq": 1});
    assert_eq!(
        l.emit_ack("read", &read).await.unwrap()["error"]["code"],
        "forbidden"
    );
    let (s, _) = app
        .get(&format!("/api/groups/{g}"), Some(&leaver.token))
        .await;
    assert_eq!(s, 403);
    // An outsider reads nothing at all.
    let outsider = app.register("outsider").await;
    let (s, _) = app
        .get(
            &format!("/api/messages?conversationType=group&receiverId={g}&afterSeq=0"),
            Some(&outsider.token),
        )
        .await;
    assert_eq!(s, 403);

    // Added back: the whole history again, and unread from the message
    // that adds them.
    let (s, body) = app.add_member(&owner, g, leaver.id()).await;
    assert_eq!(s, 201, "{body}");
    let added = next_system(&mut l, "member_added").await;
    let all = app.history(&leaver, "group", g, 0).await;
    assert_eq!(all, [before, left, after, added.clone()]);
    let row = listed(&app, &leaver, g).await.expect("listed again");
    assert_eq!((row.read_seq, row.unread_count), (added.seq - 1, 1));
    assert_eq!(group_ids(&app, &leaver).await, [g]);
    // Adding a member twice is a conflict.
    let (s, _) = app.add_member(&owner, g, leaver.id()).await;
    assert_eq!(s, 409);
}

async fn a_deleted_group_answers_404_and_its_members_keep_its_history(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let g = app.group(&owner, "doomed", &[member.id()]).await;
    let o = app.connect(&owner.token).await;
    let mut m = app.connect(&member.token).await;
    let last = send_ok(&o, group_msg(g, "last words")).await;
    next_message(&mut m).await;

    let (s, body) = app
        .delete(&format!("/api/groups/{g}"), Some(&member.token))
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = app
        .delete(&format!("/api/groups/{g}"), Some(&owner.token))
        .await;
    assert_eq!(s, 204);
    let deleted = next_system(&mut m, "group_deleted").await;

    for who in [&owner, &member] {
        let (s, _) = app.get(&format!("/api/groups/{g}"), Some(&who.token)).await;
        assert_eq!(s, 404);
        assert!(group_ids(&app, who).await.is_empty());
        assert!(listed(&app, who, g).await.is_none());
        let history = app.history(who, "group", g, 0).await;
        assert_eq!(history, [last.clone(), deleted.clone()]);
    }
    assert_eq!(send_err(&o, group_msg(g, "anyone?")).await, "not_found");
    let (s, _) = app.add_member(&owner, g, member.id()).await;
    assert_eq!(s, 404);
    let (s, _) = app
        .patch(
            &format!("/api/groups/{g}"),
            Some(&owner.token),
            json!({"name": "back"}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .delete(&format!("/api/groups/{g}"), Some(&owner.token))
        .await;
    assert_eq!(s, 404);

    // An owner alone in a group deletes it by leaving.
    let solo = app.group(&owner, "solo", &[]).await;
    let (s, _) = app
        .delete(
            &format!("/api/groups/{solo}/members/{}", owner.id()),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .get(&format!("/api/groups/{solo}"), Some(&owner.token))
        .await;
    assert_eq!(s, 404);
    let history = app.history(&owner, "group", solo, 0).await;
    assert_eq!(record(&history[0]).0, "group_deleted");
}

backend_tests!(
    renaming_roles_and_handing_over_are_system_messages_in_order,
    a_departed_member_reads_up_to_their_departure_until_added_back,
    a_deleted_group_answers_404_and_its_members_keep_its_history,
);
