//! The rebase engine against a containers-storage tree written by hand in a temp dir:
//! plan, conflicts, merge, the repository's reuse, the mount program's lookup (both lower
//! path forms), rollback, check and gc. (Real Podman stores are covered by the e2e suite.)

mod fake_store;

use std::fs;

use rebasefs_fuse::StackSpec;
use rebasefs_plugin::chain;
use rebasefs_plugin::maintenance;
use rebasefs_plugin::rebase::{self, NoProgress, Options};
use rebasefs_plugin::resolve::Policy;
use rebasefs_plugin::rollback;
use rebasefs_plugin::serve;
use serde_json::json;

use fake_store::Fake;

const PASSWD_1: &str = "root:x:0:0::/root:/bin/sh\n";
const PASSWD_2: &str = "root:x:0:0::/root:/bin/sh\nsys:x:101:101::/:/bin/false\n";
const PASSWD_APP: &str = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";

#[test]
fn rebase_reuse_serve_rollback_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = Fake::new(tmp.path());
    let b = fake.layer(
        None,
        &[
            ("etc/passwd", PASSWD_1),
            ("etc/release", "1"),
            ("etc/gone-in-2", "x"),
        ],
    );
    let n = fake.layer(None, &[("etc/passwd", PASSWD_2), ("etc/release", "2")]);
    let a1 = fake.layer(Some(&b), &[("app/bin", "app"), ("etc/.wh.gone-in-2", "")]);
    let a2 = fake.layer(Some(&a1), &[("etc/passwd", PASSWD_APP)]);
    let a2b = fake.layer(Some(&a1), &[("app/other", "other")]);
    fake.image("localhost/base:1", &b, None);
    fake.image("localhost/base:2", &n, None);
    let app = fake.image("localhost/app:1", &a2, Some("localhost/base:1"));
    fake.image("localhost/variant:1", &a2b, Some("localhost/base:1"));
    fake.save();
    let store = fake.store();

    // refuse: conflicts abort and nothing is written.
    let refuse = Options {
        image: "app:1".into(),
        onto: Some("base:2".into()),
        policy: Policy::parse(&["refuse"]).unwrap(),
        policy_given: true,
        assign: true,
        ..Default::default()
    };
    assert!(matches!(
        rebase::rebase(&store, &refuse, &NoProgress),
        Err(rebasefs_plugin::Error::Refused { .. })
    ));
    // Only the (empty) writer lock file: no repository, no store directory.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("rebasefs"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(left, ["writer.lock"], "refused rebase wrote something");

    let opts = Options {
        policy: Policy::parse(&["merge"]).unwrap(),
        ..refuse.clone()
    };
    let report = rebase::rebase(&store, &opts, &NoProgress).unwrap();
    let paths: Vec<&str> = report.conflicts.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/etc/gone-in-2", "/etc/passwd"]);
    let rebased_a1 = chain::layer_id(
        Some(&n),
        &chain::sha256_hex(
            format!(
                "{:?}{:?}",
                Some(&b),
                [("app/bin", "app"), ("etc/.wh.gone-in-2", "")]
            )
            .as_bytes(),
        ),
    );
    assert_eq!(report.layers[0].rebased_id, rebased_a1);
    assert!(report.layers.iter().all(|l| !l.reused));
    let resolution = report.lowers[0].clone();
    assert_eq!(fs::read_to_string(resolution.join("etc/passwd")).unwrap(),
        "root:x:0:0::/root:/bin/sh\nsys:x:101:101::/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n");
    // Again without a policy: the image keeps its policy, everything comes from the repository.
    let again = Options {
        policy: Policy::default(),
        policy_given: false,
        ..opts.clone()
    };
    let repeat = rebase::rebase(&store, &again, &NoProgress).unwrap();
    assert_eq!(repeat.policy, "upper-wins merge packages");
    assert!(
        repeat.layers.iter().all(|l| l.reused)
            && repeat.resolution_reused
            && repeat.base_changes_reused
    );
    assert_eq!(repeat.stack_id, report.stack_id);
    let diff = |id: &str| tmp.path().join("overlay").join(id).join("diff");
    assert_eq!(report.lowers[1..], [diff(&a2), diff(&a1), diff(&n)]);

    // The mount program, asked for the original chain in the short-link form, gets the rebased stack.
    let container_layer = fake.layer(Some(&a2), &[]);
    let asked = StackSpec {
        lowers: [&a2, &a1, &b]
            .iter()
            .map(|id| fake.short_link_of(id))
            .collect(),
        upper: Some(diff(&container_layer)),
        work: Some(
            tmp.path()
                .join("overlay")
                .join(&container_layer)
                .join("work"),
        ),
    };
    let served = serve::rewrite_stack(&asked)
        .unwrap()
        .expect("rebased stack");
    assert_eq!(served.lowers, report.lowers);
    assert_eq!(served.upper, asked.upper);
    assert!(
        !serve::needs_remount(&asked).unwrap(),
        "the container got what is assigned"
    );
    // ...and in the full-path form too; a different chain is left alone.
    let full = StackSpec {
        lowers: vec![diff(&a2), diff(&a1), diff(&b)],
        upper: None,
        work: None,
    };
    assert_eq!(
        serve::rewrite_stack(&full).unwrap().map(|s| s.lowers),
        Some(report.lowers.clone())
    );
    let other = StackSpec {
        lowers: vec![diff(&a1), diff(&b)],
        upper: None,
        work: None,
    };
    assert_eq!(serve::rewrite_stack(&other).unwrap(), None);

    // A second image sharing A1: the base comparison and A1 come from the repository.
    let variant = Options {
        image: "variant:1".into(),
        ..opts.clone()
    };
    let second = rebase::rebase(&store, &variant, &NoProgress).unwrap();
    assert!(second.base_changes_reused);
    assert!(second.layers[0].reused && !second.layers[1].reused);
    let status = rebasefs_plugin::status::status(&store).unwrap();
    let hits = |id: &str| {
        status
            .rebased_layers
            .iter()
            .find(|l| l.id == id)
            .map(|l| l.hits)
    };
    assert_eq!(
        hits(&rebased_a1),
        Some(3),
        "the repeat, one container mount, the variant"
    );

    // Rollback: the mount program serves the original again.
    let back = rollback::rollback(&store, "app:1").unwrap();
    assert!(back.stack.is_none() && back.not_servable.is_none());
    assert!(
        serve::needs_remount(&asked).unwrap(),
        "rolled back: a restart must remount"
    );
    assert_eq!(serve::rewrite_stack(&asked).unwrap(), None);
    assert!(!serve::needs_remount(&asked).unwrap());
    assert!(matches!(
        rollback::rollback(&store, "app:1"),
        Err(rebasefs_plugin::Error::NothingToRollBack(_))
    ));

    let check = maintenance::check(&store).unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    // Stacks stay while history can still use them; an image that disappears lets gc drop them.
    let mut fake2 = fake;
    fake2.images.retain(|i| i["id"] != json!(app));
    fake2.save();
    let gc = maintenance::gc(&fake2.store()).unwrap();
    assert!(
        gc.stacks_removed >= 1 && gc.directories_removed >= 1,
        "{gc:?}"
    );
    assert!(!resolution.exists());
    assert!(maintenance::check(&fake2.store()).unwrap().ok());
}

#[test]
fn unknown_image_and_wrong_base_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = Fake::new(tmp.path());
    let b = fake.layer(None, &[("etc/release", "1")]);
    let other = fake.layer(None, &[("etc/release", "other")]);
    let a = fake.layer(Some(&b), &[("app/x", "x")]);
    fake.image("localhost/base:1", &b, None);
    fake.image("localhost/other:1", &other, None);
    fake.image("localhost/app:1", &a, None);
    fake.save();
    let store = fake.store();
    let opts = |image: &str, base: Option<&str>| Options {
        image: image.into(),
        onto: Some("other:1".into()),
        base: base.map(str::to_string),
        ..Default::default()
    };
    assert!(matches!(
        rebase::rebase(&store, &opts("nope", None), &NoProgress),
        Err(rebasefs_plugin::Error::UnknownImage(_))
    ));
    assert!(matches!(
        rebase::rebase(&store, &opts("app:1", Some("other:1")), &NoProgress),
        Err(rebasefs_plugin::Error::NotAPrefix { .. })
    ));
    // No annotation: the longest tagged prefix is the base.
    let plan = rebasefs_plugin::plan::make(&store, "app:1", Some("other:1"), None).unwrap();
    assert_eq!(plan.old_base.display, "localhost/base:1");
    assert_eq!(
        plan.old_base.found,
        rebasefs_plugin::base::Found::LongestPrefix
    );
}

#[test]
fn base_wins_copies_the_new_base_version_and_its_deletions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = Fake::new(tmp.path());
    let b = fake.layer(
        None,
        &[
            ("etc/passwd", PASSWD_1),
            ("etc/motd", "old motd"),
            ("etc/dropped", "x"),
        ],
    );
    let n = fake.layer(None, &[("etc/passwd", PASSWD_2), ("etc/motd", "new motd")]);
    let a = fake.layer(
        Some(&b),
        &[
            ("etc/passwd", PASSWD_APP),
            ("etc/motd", "app motd"),
            ("etc/dropped", "app"),
        ],
    );
    fake.image("localhost/base:1", &b, None);
    fake.image("localhost/base:2", &n, None);
    fake.image("localhost/app:1", &a, Some("localhost/base:1"));
    fake.save();
    let store = fake.store();
    let opts = Options {
        image: "app:1".into(),
        onto: Some("base:2".into()),
        policy: Policy::parse(&["base-wins=/etc/motd,/etc/dropped", "merge"]).unwrap(),
        policy_given: true,
        assign: true,
        ..Default::default()
    };
    let report = rebase::rebase(&store, &opts, &NoProgress).unwrap();
    let layer = &report.lowers[0];
    assert_eq!(
        fs::read_to_string(layer.join("etc/motd")).unwrap(),
        "new motd"
    );
    assert!(
        layer.join("etc/.wh.dropped").exists(),
        "the new base's deletion is a whiteout"
    );
    assert!(fs::read_to_string(layer.join("etc/passwd"))
        .unwrap()
        .contains("sys:x:101"));
    let hows: Vec<String> = report
        .resolutions
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.path,
                serde_json::to_value(&r.how).unwrap()["how"]
                    .as_str()
                    .unwrap()
            )
        })
        .collect();
    assert_eq!(
        hows,
        [
            "/etc/dropped base-wins-deleted",
            "/etc/motd base-wins",
            "/etc/passwd merged"
        ]
    );
}

#[test]
fn status_lists_an_image_under_every_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = Fake::new(tmp.path());
    let b = fake.layer(None, &[("etc/release", "1")]);
    let a = fake.layer(Some(&b), &[("app/bin", "app")]);
    fake.image("localhost/base:1", &b, None);
    let app = fake.image("localhost/app:1", &a, Some("localhost/base:1"));
    fake.tag(&app, "localhost/app:latest");
    fake.tag(&app, "registry.example/app:1");
    fake.save();
    let status = rebasefs_plugin::status::status(&fake.store()).unwrap();
    let rows: Vec<(&str, &str)> = status
        .images
        .iter()
        .filter(|i| i.id == app[..12])
        .map(|i| (i.name.as_str(), i.base.as_deref().unwrap_or("-")))
        .collect();
    assert_eq!(
        rows,
        [
            ("localhost/app:1", "localhost/base:1"),
            ("localhost/app:latest", "localhost/base:1"),
            ("registry.example/app:1", "localhost/base:1"),
        ]
    );
    assert_eq!(status.images.len(), 4, "base:1 once, app three times");
}
