//! `keyward publish --max-removed`: a source that suddenly lists far fewer
//! users (an LDAP filter typo, an emptied folder) is refused with exit 2
//! and OUT left byte for byte as it was; the removal goes through once it
//! is asked for.

use std::path::Path;

use crate::support::slapd::{self, Person, Slapd, READER, READER_PW};
use crate::support::*;

fn users_in(dir: &Path) -> Vec<String> {
    let mut users: Vec<String> = files_under(dir)
        .into_keys()
        .filter_map(|n| n.strip_suffix(".keys").map(str::to_owned))
        .collect();
    users.sort();
    users
}

#[test]
fn an_emptied_folder_is_refused_and_out_left_as_it_was() {
    let keys = TestDir::new("guardkeys");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let line = SshKey::ed25519(keys.path(), "k").public_line();
    let work = TestDir::new("guardfolder");
    let src = work.subdir("src");
    let out = work.join("out");
    for i in 0..20 {
        std::fs::write(src.join(format!("u{i:02}.keys")), format!("{line}\n")).unwrap();
    }
    let kw = Keyward::install();
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--signer",
            signer.path.to_str().unwrap(),
        ];
        args.extend(extra);
        kw.run(&args)
    };
    let first = publish(&[]);
    assert_eq!(first.code, Some(0), "{first}");
    assert_eq!(users_in(&out).len(), 20);

    // Two leavers of twenty (10 %): published as usual.
    for i in [0, 1] {
        std::fs::remove_file(src.join(format!("u{i:02}.keys"))).unwrap();
    }
    let two = publish(&[]);
    assert_eq!(two.code, Some(0), "{two}");
    assert_eq!(users_in(&out).len(), 18);

    // The folder emptied but for one file: refused, nothing changed.
    let before = files_under(&out);
    for i in 3..20 {
        std::fs::remove_file(src.join(format!("u{i:02}.keys"))).unwrap();
    }
    let emptied = publish(&[]);
    assert_eq!(emptied.code, Some(2), "{emptied}");
    for want in [
        "would remove 17 of the 18 users",
        "more than --max-removed 10%",
        "--max-removed 100%",
        "nothing was changed",
    ] {
        assert!(emptied.stderr.contains(want), "{want}: {emptied}");
    }
    assert_eq!(files_under(&out), before, "OUT must be untouched");
    // A limit as a number of users, then the removal asked for.
    assert_eq!(publish(&["--max-removed", "16"]).code, Some(2));
    assert_eq!(files_under(&out), before);
    let asked = publish(&["--max-removed", "100%"]);
    assert_eq!(asked.code, Some(0), "{asked}");
    assert_eq!(users_in(&out), ["u02"]);
    let bad = publish(&["--max-removed", "150%"]);
    assert_eq!(bad.code, Some(2), "{bad}");
}

#[test]
fn an_ldap_filter_typo_matching_few_users_is_refused_and_out_left_as_it_was() {
    if !slapd::available() {
        skip(
            "an_ldap_filter_typo_matching_few_users_is_refused_and_out_left_as_it_was",
            "slapd and ldap-utils are not installed (scripts/test.sh installs them)",
        );
        return;
    }
    let keys = TestDir::new("guardldap");
    let signer = SshKey::ed25519(keys.path(), "signer");
    let names: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    let people: Vec<Person> = names
        .iter()
        .map(|n| Person {
            uid: n,
            ou: None,
            keys: vec![SshKey::ed25519(keys.path(), n).public_line()],
        })
        .collect();
    let s = Slapd::start(&people, &[], false);
    let pw = s.password_file("bind.pw", READER_PW);
    let work = TestDir::new("guardldapout");
    let out = work.join("out");
    let kw = Keyward::install();
    let publish = |filter: &str| {
        kw.run(&[
            "publish",
            &s.url(filter),
            out.to_str().unwrap(),
            "--bind-dn",
            READER,
            "--bind-password-file",
            pw.to_str().unwrap(),
            "--signer",
            signer.path.to_str().unwrap(),
        ])
    };
    let first = publish("(objectClass=account)");
    assert_eq!(first.code, Some(0), "{first}");
    assert_eq!(users_in(&out), names);
    let before = files_under(&out);
    // A typo in the filter that still matches one entry (`p0*` for `p*`).
    let typo = publish("(&(objectClass=account)(uid=p0*))");
    assert_eq!(typo.code, Some(2), "{typo}");
    assert!(
        typo.stderr.contains("would remove 5 of the 6 users")
            && typo.stderr.contains("more than --max-removed 10%"),
        "{typo}"
    );
    assert_eq!(files_under(&out), before, "OUT must be untouched");
    // One that matches nobody is refused by the source itself.
    let nobody = publish("(objectClass=acount)");
    assert_eq!(nobody.code, Some(2), "{nobody}");
    assert_eq!(files_under(&out), before, "OUT must be untouched");
    // A filter narrowed to one group member too many: one leaver passes.
    let one = publish("(&(objectClass=account)(!(uid=p5)))");
    assert_eq!(one.code, Some(0), "{one}");
    assert_eq!(users_in(&out), &names[..5]);
}
