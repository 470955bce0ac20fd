//! Groups over HTTP: create, list, read, membership and its authorization.

use serde_json::json;

use crate::backend_tests;
use crate::helpers::*;

async fn creating_a_group_makes_the_caller_owner_with_the_listed_members(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (status, g) = app
        .post(
            "/api/groups",
            Some(&alice.token),
            json!({"name": "team", "memberIds": [bob.id(), bob.id(), alice.id()]}),
        )
        .await;
    assert_eq!(status, 201, "{g}");
    assert_eq!(g["owner_id"], alice.id());
    assert_eq!(g["name"], "team");
    let members = g["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["user_id"], alice.id());
    assert_eq!(members[0]["role"], "owner");
    assert_eq!(members[1]["user_id"], bob.id());
    assert_eq!(members[1]["role"], "member");

    let (status, list) = app.get("/api/groups", Some(&bob.token)).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("members").is_none());
}

async fn group_creation_rejects_bad_names_and_unknown_members(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let (status, _) = app
        .post("/api/groups", Some(&alice.token), json!({"name": "  "}))
        .await;
    assert_eq!(status, 400);
    let (status, body) = app
        .post(
            "/api/groups",
            Some(&alice.token),
            json!({"name": "x", "memberIds": [777]}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app.get("/api/groups", Some(&alice.token)).await;
    assert_eq!(status, 200);
}

async fn reading_a_group_is_for_members_only(b: Backend) {
    let app = spawn_app(b).await;
    let alice = app.register("alice").await;
    let eve = app.register("eve").await;
    let g = app.group(&alice, "g", &[]).await;
    let (status, body) = app
        .get(&format!("/api/groups/{g}"), Some(&alice.token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["members"].as_array().unwrap().len(), 1);
    let (status, body) = app.get(&format!("/api/groups/{g}"), Some(&eve.token)).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, _) = app.get("/api/groups/9999", Some(&alice.token)).await;
    assert_eq!(status, 404);
}

async fn only_owner_and_admins_add_members(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let admin = app.register("admin").await;
    let member = app.register("member").await;
    let new1 = app.register("new1").await;
    let new2 = app.register("new2").await;
    let g = app.group(&owner, "g", &[member.id()]).await;
    let path = format!("/api/groups/{g}/members");
    let (s, body) = app
        .post(
            &path,
            Some(&owner.token),
            json!({"userId": admin.id(), "role": "admin"}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["role"], "admin");
    let (s, _) = app
        .post(&path, Some(&member.token), json!({"userId": new1.id()}))
        .await;
    assert_eq!(s, 403, "plain member cannot add");
    let (s, _) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"userId": new1.id(), "role": "admin"}),
        )
        .await;
    assert_eq!(s, 403, "admin cannot add admins");
    let (s, _) = app
        .post(&path, Some(&admin.token), json!({"user_id": new1.id()}))
        .await;
    assert_eq!(s, 201, "admin adds a member");
    let (s, body) = app
        .post(&path, Some(&owner.token), json!({"userId": new1.id()}))
        .await;
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("conflict")));
    let (s, _) = app
        .post(&path, Some(&owner.token), json!({"userId": 9999}))
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(&path, Some(&new2.token), json!({"userId": new2.id()}))
        .await;
    assert_eq!(s, 403, "non-member cannot add themselves");
    let (s, _) = app
        .post(
            &path,
            Some(&owner.token),
            json!({"userId": new2.id(), "role": "owner"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = app
        .post(
            "/api/groups/9999/members",
            Some(&owner.token),
            json!({"userId": new2.id()}),
        )
        .await;
    assert_eq!(s, 404);
}

async fn members_leave_and_owner_or_admin_remove(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.register("owner").await;
    let admin = app.register("admin").await;
    let m1 = app.register("mem1").await;
    let m2 = app.register("mem2").await;
    let g = app.group(&owner, "g", &[m1.id(), m2.id()]).await;
    app.post(
        &format!("/api/groups/{g}/members"),
        Some(&owner.token),
        json!({"userId": admin.id(), "role": "admin"}),
    )
    .await;
    let del = |who: i64| format!("/api/groups/{g}/members/{who}");

    let (s, _) = app.delete(&del(m2.id()), Some(&m1.token)).await;
    assert_eq!(s, 403, "a member cannot remove another");
    let (s, _) = app.delete(&del(owner.id()), Some(&admin.token)).await;
    assert_eq!(s, 403, "an admin cannot remove the owner");
    let (s, _) = app.delete(&del(m2.id()), Some(&admin.token)).await;
    assert_eq!(s, 204, "an admin removes a member");
    let (s, _) = app.delete(&del(m2.id()), Some(&admin.token)).await;
    assert_eq!(s, 404, "already gone");
    let (s, _) = app.delete(&del(m1.id()), Some(&m1.token)).await;
    assert_eq!(s, 204, "a member leaves");
    let (s, _) = app.get(&format!("/api/groups/{g}"), Some(&m1.token)).await;
    assert_eq!(s, 403, "a former member cannot read the group");

    // The owner cannot leave others behind (v1.2): ownership is handed
    // over first, then the old owner, now an admin, leaves.
    let (s, body) = app.delete(&del(owner.id()), Some(&owner.token)).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (s, body) = app
        .post(
            &format!("/api/groups/{g}/owner"),
            Some(&owner.token),
            json!({"userId": admin.id()}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = app.delete(&del(owner.id()), Some(&owner.token)).await;
    assert_eq!(s, 204);
    let (_, body) = app
        .get(&format!("/api/groups/{g}"), Some(&admin.token))
        .await;
    assert_eq!(body["owner_id"], admin.id());
    assert_eq!(body["members"][0]["role"], "owner");
}

backend_tests!(
    creating_a_group_makes_the_caller_owner_with_the_listed_members,
    group_creation_rejects_bad_names_and_unknown_members,
    reading_a_group_is_for_members_only,
    only_owner_and_admins_add_members,
    members_leave_and_owner_or_admin_remove,
);
