//! `check_rules` against rooms in a temporary store: what a member who
//! asks for a change is told.

use crate::error::Error;
use crate::ids::{MemberId, RoomId};
use crate::model::{EventBody, RoomKind};
use crate::rooms::check_rules;
use crate::store::rooms::{self, RoomRow};
use crate::store::testing::{TempStore, temp_store};

fn id(input: &str) -> MemberId {
    MemberId::parse(input).expect("member id")
}

/// A room hosted here with `members`, as the store reads it back.
async fn new_room(
    t: &TempStore,
    kind: RoomKind,
    master: Option<&MemberId>,
    members: &[&MemberId],
) -> (RoomRow, Vec<MemberId>) {
    let room = RoomId::generate();
    let key = match (kind, members) {
        (RoomKind::Direct, [a, b]) => Some(rooms::direct_key(a, b)),
        _ => None,
    };
    let name = match kind {
        RoomKind::Direct => "",
        RoomKind::Group => "planning",
    };
    let mut conn = t.conn().await;
    rooms::insert_room(
        &mut conn,
        &room,
        kind,
        name,
        master,
        key.as_deref(),
        None,
        1,
        1,
    )
    .await
    .expect("insert room");
    for m in members {
        rooms::insert_membership(&mut conn, &room, m, 1, 1)
            .await
            .expect("insert membership");
    }
    rooms::room_with_members(&mut conn, &room)
        .await
        .expect("read room")
        .expect("room stored")
}

/// A direct room of `a` and `b` that `left` has left.
async fn direct_after_leaving(
    t: &TempStore,
    a: &MemberId,
    b: &MemberId,
    left: &MemberId,
) -> (RoomRow, Vec<MemberId>) {
    let (row, _) = new_room(t, RoomKind::Direct, None, &[a, b]).await;
    let mut conn = t.conn().await;
    rooms::delete_membership(&mut conn, &row.id, left)
        .await
        .expect("leave");
    let members = rooms::member_ids(&mut conn, &row.id)
        .await
        .expect("members");
    (row, members)
}

async fn rules(
    t: &TempStore,
    (row, members): &(RoomRow, Vec<MemberId>),
    actor: &MemberId,
    body: EventBody,
) -> Result<(), Error> {
    let mut conn = t.conn().await;
    check_rules(&mut conn, row, members, actor, &body).await
}

fn joined(members: &[&MemberId]) -> EventBody {
    EventBody::Joined {
        members: members.iter().map(|m| (*m).clone()).collect(),
    }
}

fn removed(member: &MemberId) -> EventBody {
    EventBody::Removed {
        member: member.clone(),
    }
}

#[tokio::test]
async fn the_group_master_adds_and_removes_members() {
    let t = temp_store().await;
    let (master, b, c) = (
        t.member("a@a.example").await,
        t.member("b@a.example").await,
        t.member("c@a.example").await,
    );
    let group = new_room(&t, RoomKind::Group, Some(&master), &[&master, &b]).await;
    assert!(rules(&t, &group, &master, joined(&[&c])).await.is_ok());
    assert!(rules(&t, &group, &master, removed(&b)).await.is_ok());
}

#[tokio::test]
async fn only_the_group_master_adds_members() {
    let t = temp_store().await;
    let (master, b, c) = (
        t.member("a@a.example").await,
        t.member("b@a.example").await,
        t.member("c@a.example").await,
    );
    let group = new_room(&t, RoomKind::Group, Some(&master), &[&master, &b]).await;
    let room = group.0.id;
    match rules(&t, &group, &b, joined(&[&c])).await {
        Err(e @ Error::PermissionDenied(_)) => assert_eq!(
            e.to_string(),
            format!("only the group master can add members in room {room}")
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_the_group_master_removes_members() {
    let t = temp_store().await;
    let (master, b, c) = (
        t.member("a@a.example").await,
        t.member("b@a.example").await,
        t.member("c@a.example").await,
    );
    let group = new_room(&t, RoomKind::Group, Some(&master), &[&master, &b, &c]).await;
    let room = group.0.id;
    match rules(&t, &group, &b, removed(&c)).await {
        Err(e @ Error::PermissionDenied(_)) => assert_eq!(
            e.to_string(),
            format!("only the group master can remove members in room {room}")
        ),
        other => panic!("{other:?}"),
    }
    // Not even the master.
    match rules(&t, &group, &b, removed(&master)).await {
        Err(e @ Error::PermissionDenied(_)) => assert_eq!(
            e.to_string(),
            format!("only the group master can remove members in room {room}")
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_group_without_a_master_lets_nobody_add_or_remove() {
    let t = temp_store().await;
    let (a, b, c) = (
        t.member("a@a.example").await,
        t.member("b@a.example").await,
        t.member("c@a.example").await,
    );
    let group = new_room(&t, RoomKind::Group, None, &[&a, &b]).await;
    assert!(matches!(
        rules(&t, &group, &a, joined(&[&c])).await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        rules(&t, &group, &a, removed(&b)).await,
        Err(Error::PermissionDenied(_))
    ));
}

#[tokio::test]
async fn in_a_group_of_one_company_every_member_renames_posts_and_leaves() {
    let t = temp_store().await;
    let (master, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let group = new_room(&t, RoomKind::Group, Some(&master), &[&master, &b]).await;
    for body in [
        EventBody::Renamed {
            name: "launch".into(),
        },
        EventBody::Text { text: "hi".into() },
        EventBody::Sticker {
            name: "wave".into(),
        },
        EventBody::Left { new_master: None },
        EventBody::Unknown,
    ] {
        let kind = body.kind();
        assert!(rules(&t, &group, &b, body).await.is_ok(), "{kind}");
    }
}

#[tokio::test]
async fn removing_yourself_is_refused_with_the_way_to_leave() {
    let t = temp_store().await;
    let (master, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let group = new_room(&t, RoomKind::Group, Some(&master), &[&master, &b]).await;
    match rules(&t, &group, &master, removed(&master)).await {
        Err(
            e @ Error::Invalid {
                field: "member_id", ..
            },
        ) => assert_eq!(
            e.to_string(),
            "invalid member_id: to remove yourself, leave the room"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn removing_someone_not_in_the_room_is_not_found() {
    let t = temp_store().await;
    let (master, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let outsider = t.member("c@a.example").await;
    let group = new_room(&t, RoomKind::Group, Some(&master), &[&master, &b]).await;
    let room = group.0.id;
    match rules(&t, &group, &master, removed(&outsider)).await {
        Err(e @ Error::NotFound(_)) => assert_eq!(
            e.to_string(),
            format!("member c@a.example in room {room} not found")
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_actor_not_in_the_room_is_refused_whatever_they_ask() {
    let t = temp_store().await;
    let (master, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let outsider = t.member("c@a.example").await;
    let group = new_room(&t, RoomKind::Group, Some(&master), &[&master, &b]).await;
    let room = group.0.id;
    for body in [
        EventBody::Text { text: "hi".into() },
        EventBody::Renamed {
            name: "mine".into(),
        },
        joined(&[&outsider]),
        removed(&b),
        EventBody::Left { new_master: None },
    ] {
        let kind = body.kind();
        match rules(&t, &group, &outsider, body).await {
            Err(e @ Error::PermissionDenied(_)) => assert_eq!(
                e.to_string(),
                format!("c@a.example is not a member of room {room}"),
                "{kind}"
            ),
            other => panic!("{kind}: {other:?}"),
        }
    }
    // The same holds in a direct room, for anything but bringing it back.
    let direct = new_room(&t, RoomKind::Direct, None, &[&master, &b]).await;
    let room = direct.0.id;
    match rules(
        &t,
        &direct,
        &outsider,
        EventBody::Text { text: "hi".into() },
    )
    .await
    {
        Err(e @ Error::PermissionDenied(_)) => assert_eq!(
            e.to_string(),
            format!("c@a.example is not a member of room {room}")
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn either_of_a_direct_rooms_two_brings_back_the_one_who_left() {
    let t = temp_store().await;
    let (a, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let direct = direct_after_leaving(&t, &a, &b, &b).await;
    assert_eq!(direct.1, vec![a.clone()]);
    // The one who stayed, and the one who left (not in the room now).
    assert!(rules(&t, &direct, &a, joined(&[&b])).await.is_ok());
    assert!(rules(&t, &direct, &b, joined(&[&b])).await.is_ok());
}

#[tokio::test]
async fn a_direct_rooms_members_cannot_change() {
    let t = temp_store().await;
    let (a, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let c = t.member("c@a.example").await;
    let direct = new_room(&t, RoomKind::Direct, None, &[&a, &b]).await;
    let refusal = "a direct room's members cannot change; create a group room instead";
    for body in [joined(&[&c]), joined(&[&b, &c]), removed(&b)] {
        let kind = body.kind();
        match rules(&t, &direct, &a, body).await {
            Err(e @ Error::FailedPrecondition(_)) => assert_eq!(e.to_string(), refusal, "{kind}"),
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn only_one_of_the_two_brings_a_direct_room_back() {
    let t = temp_store().await;
    let (a, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let outsider = t.member("c@a.example").await;
    let direct = direct_after_leaving(&t, &a, &b, &b).await;
    let room = direct.0.id;
    match rules(&t, &direct, &outsider, joined(&[&b])).await {
        Err(e @ Error::PermissionDenied(_)) => assert_eq!(
            e.to_string(),
            format!("c@a.example is not one of the two members of room {room}")
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_direct_room_cannot_be_renamed() {
    let t = temp_store().await;
    let (a, b) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let direct = new_room(&t, RoomKind::Direct, None, &[&a, &b]).await;
    match rules(&t, &direct, &a, EventBody::Renamed { name: "us".into() }).await {
        Err(e @ Error::FailedPrecondition(_)) => assert_eq!(
            e.to_string(),
            "a direct room has no name; create a group room instead"
        ),
        other => panic!("{other:?}"),
    }
    // Messages and leaving are the two members' to send.
    assert!(
        rules(&t, &direct, &b, EventBody::Text { text: "hi".into() })
            .await
            .is_ok()
    );
    assert!(
        rules(&t, &direct, &b, EventBody::Left { new_master: None })
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_direct_room_with_another_company_brings_back_its_member() {
    let t = temp_store().await;
    let a = t.member("a@a.example").await;
    let b = id("b@b.example");
    let direct = direct_after_leaving(&t, &a, &b, &b).await;
    assert!(rules(&t, &direct, &a, joined(&[&b])).await.is_ok());
    assert!(rules(&t, &direct, &b, joined(&[&b])).await.is_ok());
}

#[tokio::test]
async fn only_the_group_master_renames_a_group_with_other_companies() {
    let t = temp_store().await;
    let (master, colleague) = (t.member("a@a.example").await, t.member("b@a.example").await);
    let outsider = id("x@b.example");
    let group = new_room(
        &t,
        RoomKind::Group,
        Some(&master),
        &[&master, &colleague, &outsider],
    )
    .await;
    let room = group.0.id;
    let rename = || EventBody::Renamed {
        name: "launch".into(),
    };
    // Neither a colleague of the master's nor a member of the other company.
    for actor in [&colleague, &outsider] {
        match rules(&t, &group, actor, rename()).await {
            Err(e @ Error::PermissionDenied(_)) => assert_eq!(
                e.to_string(),
                format!(
                    "only the group master, a@a.example, can rename room {room}, which has members of other companies"
                ),
                "{actor}"
            ),
            other => panic!("{actor}: {other:?}"),
        }
    }
    assert!(rules(&t, &group, &master, rename()).await.is_ok());
    // Everything else stays every member's.
    for body in [
        EventBody::Text { text: "hi".into() },
        EventBody::Left { new_master: None },
    ] {
        let kind = body.kind();
        assert!(rules(&t, &group, &outsider, body).await.is_ok(), "{kind}");
    }
}

#[tokio::test]
async fn a_group_with_other_companies_and_no_master_is_renamed_by_nobody() {
    let t = temp_store().await;
    let a = t.member("a@a.example").await;
    let outsider = id("x@b.example");
    let group = new_room(&t, RoomKind::Group, None, &[&a, &outsider]).await;
    let room = group.0.id;
    match rules(&t, &group, &a, EventBody::Renamed { name: "x".into() }).await {
        Err(e @ Error::PermissionDenied(_)) => assert_eq!(
            e.to_string(),
            format!(
                "only the group master can rename room {room}, which has members of other companies"
            )
        ),
        other => panic!("{other:?}"),
    }
}
