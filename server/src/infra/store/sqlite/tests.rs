//! `0008_uuid_blobs.sql` upgrades a database made by the earlier migrations, keeping its
//! rows: ids written as text read back as the same `Uuid`s, references included.

use std::path::Path;

use chrono::NaiveDate;
use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use uuid::Uuid;

use crate::infra::store::{
    Claim, FollowStore, KeyStore, PlanDeletion, PlanStore, PoolSettings, Store, TweetStore,
    UsageStore, UserStore, secret_hash,
};

/// The database as the migrations before `0008` left it.
async fn migrate_before_blobs(file: &Path) -> SqlitePool {
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let old = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        if name < "0008" {
            std::fs::copy(&path, old.path().join(name)).expect("copy");
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePool::connect_with(options).await.expect("open");
    let migrator = Migrator::new(old.path()).await.expect("old migrations");
    assert_eq!(migrator.iter().count(), 7);
    migrator.run(&pool).await.expect("old migrations run");
    pool
}

#[tokio::test]
async fn text_ids_become_blobs_and_every_row_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("old.db");
    let pool = migrate_before_blobs(&file).await;
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (tweet, plan, key) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let created = "2024-05-01T12:00:00.123+00:00";
    let statements = [
        format!(
            "INSERT INTO users (id, username, email, display_name, password_hash, created_at,
                 follower_count, following_count, tweet_count, picture_key, picture_type,
                 picture_etag, picture_width, picture_height, picture_size)
             VALUES ('{ada}', 'ada', 'ada@example.com', 'Ada', 'hash', '{created}', 1, 0, 1,
                     'pictures/ada', 'image/png', 'etag', 10, 20, 30)"
        ),
        format!(
            "INSERT INTO users (id, username, email, display_name, password_hash, created_at,
                 following_count)
             VALUES ('{bob}', 'bob', 'bob@example.com', 'Bob', 'hash', '{created}', 1)"
        ),
        format!(
            "INSERT INTO follows (follower_id, followee_id, created_at)
             VALUES ('{bob}', '{ada}', '{created}')"
        ),
        format!(
            "INSERT INTO tweets (id, author_id, text, created_at)
             VALUES ('{tweet}', '{ada}', 'hello', '{created}')"
        ),
        format!(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at,
                 response_status, response_location, response_body, resource_id)
             VALUES ('{ada}', 'k1', 'h1', strftime('%s', 'now'), 201, '/v1/tweets/{tweet}',
                     '{{}}', '{tweet}')"
        ),
        format!(
            "INSERT INTO usage_plans (id, name, throttle_rate, throttle_burst, created_at)
             VALUES ('{plan}', 'gold', 5.0, 10, '{created}')"
        ),
        format!(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, plan_id, created_at)
             VALUES ('{key}', 'partner', 'mk_abc', '{}', '{plan}', '{created}')",
            secret_hash("mk_secret")
        ),
        format!("INSERT INTO usage (key_id, day, used) VALUES ('{key}', '2024-05-01', 7)"),
    ];
    for sql in &statements {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    pool.close().await;

    let store = super::open_file(&file, &PoolSettings::default(), super::Purpose::Serving)
        .await
        .expect("the upgrade runs");

    let user = store.user_by_id(ada).await.expect("read").expect("ada");
    assert_eq!((user.username.as_str(), user.tweet_count), ("ada", 1));
    assert_eq!(
        user.created_at.to_rfc3339(),
        "2024-05-01T12:00:00.123+00:00"
    );
    assert_eq!(user.picture.expect("a picture").size, 30);
    let by_email = store.user_by_email("ADA@example.com").await.expect("read");
    assert_eq!(by_email.map(|u| u.id), Some(ada), "still case-insensitive");
    let followers = store.followers(ada, None, 10).await.expect("read");
    assert_eq!(
        followers.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        [bob]
    );
    assert_eq!(store.followee_ids(bob).await.expect("read"), [ada]);
    let timeline = store.timeline(bob, None, 10).await.expect("read");
    assert_eq!(
        timeline.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [tweet]
    );
    let replay = store
        .claim_idempotency_key(ada, "k1", "h1")
        .await
        .expect("claim");
    assert!(matches!(replay, Claim::Replay { status: 201, .. }));
    let (found, gold, _) = store
        .key_by_secret_hash(&secret_hash("mk_secret"))
        .await
        .expect("read")
        .expect("the key");
    assert_eq!((found.id, found.plan_id, gold.id), (key, plan, plan));
    assert_eq!(gold.throttle, Some((5.0, 10)));
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).expect("a day");
    assert_eq!(store.usage_since(key, day).await.expect("read"), 7);
    // The references survived the rebuild: a plan in use still cannot go, and a new
    // follow of an unknown user is still refused.
    assert!(matches!(
        store.delete_plan(plan).await.expect("delete"),
        PlanDeletion::InUse
    ));
    let unknown = store.follow(ada, Uuid::now_v7()).await.expect("follow");
    assert!(matches!(
        unknown.outcome,
        crate::infra::store::EdgeChange::UnknownUser
    ));
    store.close().await;
}
