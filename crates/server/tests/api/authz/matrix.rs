//! The matrix: every operation × every relationship to it, with the
//! answer the contract gives.

use super::{
    code, conflict, forbidden, not_found, GroupRef::Known, GroupRef::Unknown as NoGroup, Op,
    Outcome, UserRef::Is, UserRef::Unknown as NoUser, Who, Who::*, HIDDEN, OK,
};

pub(super) struct Row {
    pub(super) actor: Who,
    pub(super) op: Op,
    pub(super) expect: Outcome,
}

fn row(actor: Who, op: Op, expect: Outcome) -> Row {
    Row { actor, op, expect }
}

/// The matrix. Sources: PROTOCOL.md (send, typing, read, history, groups)
/// and docs/decisions.md (roles: only the owner adds admins, the owner
/// removes anyone, an admin only plain members).
pub(super) fn matrix() -> Vec<Row> {
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
