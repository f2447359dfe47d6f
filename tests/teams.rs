//! Teams, roles and visibility over real HTTP: a user outside a team never
//! sees that team's items; roles gate writes.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

async fn isolation(backend: Backend) {
    let gw = Gw::on(backend).start().await;
    let alice = gw.token("alice@example.com");
    let bob = gw.token("bob@example.com");
    let carol = gw.token("carol@example.com");
    let vic = gw.token("vic@example.com");

    let (s, team) = gw
        .post(
            "/v1/teams",
            &alice,
            json!({"name": "Payments", "description": "pay"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let tid = team["id"].as_str().unwrap().to_owned();
    assert_eq!(team["visibility"], "private");
    let (s, _) = gw
        .post("/v1/teams", &carol, json!({"name": "payments"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "slug clash");

    let members = format!("/v1/teams/{tid}/members");
    let (s, v) = gw
        .post(
            &members,
            &alice,
            json!({"email": "Bob@Example.com", "role": "developer"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        gw.post(
            &members,
            &alice,
            json!({"email": "vic@example.com", "role": "viewer"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        gw.post(&members, &alice, json!({"email": "vic@example.com"}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        gw.post(
            &members,
            &alice,
            json!({"email": "x@example.com", "role": "king"})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        gw.post(&members, &alice, json!({"email": "not-an-email"}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Only team admins manage members; outsiders do not even see the team.
    assert_eq!(
        gw.post(&members, &bob, json!({"email": "z@example.com"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        gw.post(&members, &carol, json!({"email": "z@example.com"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(gw.get(&members, &carol).await.0, StatusCode::NOT_FOUND);
    assert_eq!(gw.count(&members, &vic).await, 3);

    let team_tool = gw
        .tool(
            &alice,
            json!({"name": "ledger", "url": "https://a.example/l", "team_id": tid}),
        )
        .await;
    assert_eq!(team_tool["visibility"], "team");
    gw.tool(
        &alice,
        json!({"name": "alice-private", "url": "https://a.example/p", "visibility": "private"}),
    )
    .await;
    let (s, v) = gw
        .post(
            "/v1/tools",
            &alice,
            json!({"name": "alice-public", "url": "https://a.example/p"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "publishing outside a team needs an admin: {v}"
    );
    gw.tool(&gw.admin, rest_tool("everyone")).await;

    assert_eq!(
        names(&gw.get("/v1/tools", &alice).await.1),
        vec!["ledger", "alice-private", "everyone"]
    );
    assert_eq!(
        names(&gw.get("/v1/tools", &bob).await.1),
        vec!["ledger", "everyone"]
    );
    assert_eq!(
        names(&gw.get("/v1/tools", &vic).await.1),
        vec!["ledger", "everyone"]
    );
    assert_eq!(
        names(&gw.get("/v1/tools", &carol).await.1),
        vec!["everyone"]
    );
    assert_eq!(
        names(&gw.get(&format!("/v1/tools?team_id={tid}"), &carol).await.1),
        Vec::<String>::new()
    );
    let ledger = format!("/v1/tools/{}", team_tool["id"].as_str().unwrap());
    assert_eq!(gw.get(&ledger, &carol).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        gw.put(&ledger, &carol, json!({"description": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(gw.delete(&ledger, &carol).await.0, StatusCode::NOT_FOUND);
    // The team list: carol sees no private team.
    assert_eq!(gw.count("/v1/teams", &carol).await, 0);
    assert_eq!(gw.count("/v1/teams", &bob).await, 1);

    // Roles gate writes: developers write team items, viewers do not.
    let (s, v) = gw
        .put(&ledger, &bob, json!({"description": "by bob"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        gw.put(&ledger, &vic, json!({"description": "by vic"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    for (who, name, want) in [
        (&vic, "v", StatusCode::FORBIDDEN),
        (&carol, "c", StatusCode::FORBIDDEN),
        (&bob, "b", StatusCode::CREATED),
    ] {
        let body = json!({"name": name, "url": "https://a.example", "team_id": tid});
        assert_eq!(gw.post("/v1/tools", who, body).await.0, want, "{name}");
    }

    // A token restricted to no teams sees only public items and its own.
    let narrowed = Gw::token_with(&gw.running, "bob@example.com", Some(vec![]), false);
    assert_eq!(
        names(&gw.get("/v1/tools", &narrowed).await.1),
        vec!["everyone", "b"]
    );

    // Promotion takes effect at once on this instance.
    let (s, v) = gw
        .put(
            &format!("{members}/vic@example.com"),
            &alice,
            json!({"role": "developer"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        gw.put(&ledger, &vic, json!({"description": "by vic"}))
            .await
            .0,
        StatusCode::OK
    );

    // The last team admin cannot leave; removing members works.
    for (member, want) in [("alice", StatusCode::CONFLICT), ("bob", StatusCode::OK)] {
        let path = format!("{members}/{member}@example.com");
        assert_eq!(gw.delete(&path, &alice).await.0, want, "{member}");
    }
    assert_eq!(
        names(&gw.get("/v1/tools", &bob).await.1),
        vec!["everyone", "b"]
    );

    // A team that still owns items cannot be deleted.
    assert_eq!(
        gw.delete(&format!("/v1/teams/{tid}"), &alice).await.0,
        StatusCode::CONFLICT
    );
    gw.stop().await;
}
both!(outsiders_never_see_team_items, isolation);

async fn admin_sees_all(backend: Backend) {
    let gw = Gw::on(backend).start().await;
    let alice = gw.token("alice@example.com");
    gw.tool(
        &alice,
        json!({"name": "mine", "url": "https://a.example", "visibility": "private"}),
    )
    .await;
    assert_eq!(names(&gw.get("/v1/tools", &gw.admin).await.1), vec!["mine"]);
    // The platform admin email is admin even without the claim.
    let by_email = gw.token("admin@example.com");
    assert_eq!(names(&gw.get("/v1/tools", &by_email).await.1), vec!["mine"]);
    gw.stop().await;
}
both!(platform_admin_sees_everything, admin_sees_all);
