//! The shapes `batchable::batch_line` admits, held to the real programs: for every
//! example (every admitted option, extension and value kind; fail2ban's and docker's
//! commands; filter, nat, raw and mangle; IPv4 and IPv6), on iptables-legacy and
//! iptables-nft (ip6tables-* for IPv6), each in a fresh network namespace with the same
//! set-up (tests/batchable/shapes.sh): the bare command exits 0 and prints nothing; its
//! line in `*table` .. `COMMIT` fed to `<prog>-restore --noflush` exits 0 and prints
//! nothing; and both leave the same tables, which differ from the set-up's.

use crate::common::*;
use std::ffi::OsString;
use std::path::Path;
use xtlock::batchable::batch_line;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// An example: its family, whether the fixture is loaded first (not for the `-N` of a
/// chain the fixture has), and the command's words (shell-quoted).
struct Row {
    family: Family,
    fixture: bool,
    argv: String,
}

fn v4(argv: &str) -> Row {
    Row {
        family: Family::V4,
        fixture: true,
        argv: argv.into(),
    }
}

fn v6(argv: &str) -> Row {
    Row {
        family: Family::V6,
        fixture: true,
        argv: argv.into(),
    }
}

fn empty(mut row: Row) -> Row {
    row.fixture = false;
    row
}

/// The set-up of every run with `fixture`: the chains the examples jump to, rules for
/// `-I` to go before and `-D` to find, an empty unreferenced chain for `-X`. `{a}` is an
/// address of the family and `{r}` its port-unreachable.
const FIXTURE: &str = "*filter
:f2b-sshd - [0:0]
:f2b-empty - [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A INPUT -j ACCEPT
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A f2b-sshd -s {a} -j REJECT --reject-with {r}
-A f2b-sshd -j RETURN
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
COMMIT
*nat
:DOCKER - [0:0]
:nat-empty - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -o eth0 -j RETURN
-A DOCKER -i docker0 -j RETURN
COMMIT
*raw
-A PREROUTING -j ACCEPT
COMMIT
*mangle
-A PREROUTING -j ACCEPT
COMMIT
";

fn fixture(family: Family) -> String {
    let (address, reject) = match family {
        Family::V4 => ("192.0.2.1/32", "icmp-port-unreachable"),
        Family::V6 => ("2001:db8::1/128", "icmp6-port-unreachable"),
    };
    FIXTURE.replace("{a}", address).replace("{r}", reject)
}

/// The sets `--match-set` names, made in every run when ipset is installed.
const SETS: &str = "create f2b-sshd hash:ip\ncreate f2b-sshd6 hash:ip family inet6\n";

fn rows() -> Vec<Row> {
    let mut rows = vec![
        // fail2ban 1.0 (action.d/iptables.conf, iptables-multiport, -allports, -ipset),
        // <lockingopt> = -w.
        empty(v4("-w -N f2b-sshd")),
        v4("-w -A f2b-sshd -j RETURN"),
        v4("-w -I INPUT -p tcp -m multiport --dports ssh -j f2b-sshd"),
        v4("-w -I INPUT -p tcp -j f2b-sshd"),
        v4("-w -I INPUT -p all -j f2b-sshd"),
        v4("-w -I f2b-sshd 1 -s 198.51.100.7 -j REJECT --reject-with icmp-port-unreachable"),
        v4("-w -D f2b-sshd -s 192.0.2.1 -j REJECT --reject-with icmp-port-unreachable"),
        v4("-w -D INPUT -p tcp -m multiport --dports 22 -j f2b-sshd"),
        v4("-w -F f2b-sshd"),
        v4("-w -X f2b-empty"),
        v4(
            "-w -I INPUT -p tcp -m multiport --dports 22,80:90 -m set --match-set f2b-sshd src -j DROP",
        ),
        v4(
            "-w -I INPUT -m set ! --match-set f2b-sshd dst -j REJECT --reject-with icmp-host-prohibited",
        ),
        v4("-w 10 -I f2b-sshd -s 198.51.100.0/24 -j DROP"),
        empty(v6("-w -N f2b-sshd")),
        v6("-w -I f2b-sshd 1 -s 2001:db8::7 -j REJECT --reject-with icmp6-port-unreachable"),
        v6("-w -D f2b-sshd -s 2001:db8::1 -j REJECT --reject-with icmp6-port-unreachable"),
        v6("-w -I INPUT -p tcp -m multiport --dports 22 -m set --match-set f2b-sshd6 src -j DROP"),
        v6("-w -D INPUT -p tcp -m multiport --dports 22 -j f2b-sshd"),
        v6("-w -F f2b-sshd"),
        v6("-w -X f2b-empty"),
        // docker 20.10.
        empty(v4("--wait -N DOCKER-USER")),
        empty(v4("--wait -t nat -N DOCKER")),
        v4("--wait -I FORWARD -j DOCKER-ISOLATION-STAGE-1"),
        v4("--wait -I FORWARD -o docker0 -j DOCKER"),
        v4("--wait -I FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        v4("--wait -I FORWARD -i docker0 ! -o docker0 -j ACCEPT"),
        v4("--wait -I FORWARD -i docker0 -o docker0 -j ACCEPT"),
        v4(
            "--wait -I DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
        ),
        v4("--wait -I DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP"),
        v4(
            "--wait -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
        ),
        v4("--wait -I FORWARD -o br-0123456789ab -j DOCKER"),
        v4("--wait -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"),
        v4("--wait -t nat -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER ! --dst 127.0.0.0/8"),
        v4("--wait -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"),
        v4("--wait -t nat -I DOCKER -i docker0 -j RETURN"),
        v4(
            "--wait -t nat -A DOCKER -p tcp -d 0/0 --dport 8080 -j DNAT --to-destination 172.17.0.2:80 ! -i docker0",
        ),
        v4(
            "--wait -t nat -A POSTROUTING -p tcp -s 172.17.0.2/32 -d 172.17.0.2/32 --dport 80 -j MASQUERADE",
        ),
        v4("--wait -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"),
        v4("--wait -t nat -F DOCKER"),
        v4("--wait -t nat -X nat-empty"),
        v6("--wait -t nat -A POSTROUTING -s fd00::/64 ! -o docker0 -j MASQUERADE"),
        v6(
            "--wait -t nat -A DOCKER -p tcp -d ::/0 --dport 8080 -j DNAT --to-destination [fd00::2]:80 ! -i docker0",
        ),
        v6("--wait -I FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        // Every base option by its long names, -t anywhere, -w's value anywhere.
        v4(
            "--append INPUT --source 10.0.0.0/255.0.0.0 --destination 192.0.2.0/24 --protocol udp --in-interface lo --jump ACCEPT --table filter",
        ),
        v4("--insert FORWARD 1 --src 192.0.2.9 --out-interface eth+ --goto DOCKER"),
        v4(
            "--delete f2b-sshd --source 192.0.2.1/32 --jump REJECT --reject-with icmp-port-unreachable",
        ),
        empty(v4("--new-chain f2b-new")),
        v4("--delete-chain f2b-empty"),
        v4("--flush INPUT"),
        v4("-A INPUT -p tcp -j ACCEPT -w 3"),
        v4("-A INPUT ! -s 192.0.2.0/24 ! -d 192.0.2.1 ! -p udp ! -i lo -g f2b-sshd"),
        v4("-t filter -I INPUT -p 6 -j ACCEPT"),
        v4("-t raw -A PREROUTING -p udp ! --sport 53 -j RETURN"),
        v4("-t mangle -I PREROUTING -s 192.0.2.0/24 -j ACCEPT"),
        v6(
            "--append FORWARD --source ::ffff:192.0.2.0/120 --dst 2001:db8::/32 --protocol tcp --out-interface docker0 --jump DROP",
        ),
        v6("-A INPUT ! -s 2001:db8::/64 ! -p udp ! -i lo -g f2b-sshd"),
        // tcp, udp, multiport: every option name, ranges, inversion.
        v4("-A INPUT -p tcp -m tcp --sport 1024:65535 --destination-port 22 -j ACCEPT"),
        v4("-A INPUT -p tcp -m tcp --source-port http ! --dport 22 -j ACCEPT"),
        v4("-A INPUT -p udp -m udp --source-port 53 --dport 1024:2048 -j ACCEPT"),
        v4("-A INPUT -p udp --sport 53 ! --destination-port 53 -j ACCEPT"),
        v4("-A INPUT -p tcp -m multiport --sports 1,2:3 -j ACCEPT"),
        v4(
            "-A INPUT -p tcp -m multiport --source-ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT",
        ),
        v4("-A INPUT -p udp -m multiport ! --destination-ports domain,ntp -j ACCEPT"),
        v4("-A INPUT -p tcp -m multiport --ports 22,443 -j ACCEPT"),
        v4("-A INPUT -p tcp -m comment --comment x --sport 1024 -j ACCEPT"),
        v6("-A INPUT -p tcp --dport 22 -j ACCEPT"),
        // conntrack, state, comment, addrtype.
        v4("-A INPUT -m conntrack ! --ctstate INVALID -j ACCEPT"),
        v4(
            "-A INPUT -m conntrack --ctstate NEW,ESTABLISHED,RELATED,INVALID,UNTRACKED,SNAT,DNAT -j ACCEPT",
        ),
        v4("-A INPUT -m state --state NEW,ESTABLISHED,RELATED,INVALID,UNTRACKED -j ACCEPT"),
        v4("-A INPUT -m state ! --state NEW -j ACCEPT"),
        v4("-A INPUT -m comment --comment 'banned by fail2ban: sshd (x) #1' -j DROP"),
        v4("-A INPUT -m comment --comment 'trailing space ' -j DROP"),
        v6("-A INPUT -m comment --comment 'a b' -j DROP"),
        v4(
            "-A INPUT -m addrtype --src-type UNSPEC,UNICAST,LOCAL,BROADCAST,ANYCAST,MULTICAST,BLACKHOLE,UNREACHABLE,PROHIBIT,THROW,NAT,XRESOLVE -j ACCEPT",
        ),
        v4("-A INPUT -m addrtype ! --src-type LOCAL ! --dst-type MULTICAST -j ACCEPT"),
        v6("-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"),
        // LOG, SNAT, DNAT.
        v4("-A INPUT -p udp -j LOG --log-prefix 'dns: '"),
        v4("-A INPUT -j LOG --log-prefix 01234567890123456789012345678"),
        v4("-A INPUT -j LOG"),
        v6("-A INPUT -j LOG --log-prefix f2b"),
        v4("-t nat -A POSTROUTING -o eth0 -j SNAT --to-source 192.0.2.1"),
        v4("-t nat -A POSTROUTING -p tcp -o eth0 -j SNAT --to-source 192.0.2.1:1000-2000"),
        v4("-t nat -A DOCKER -p udp -j DNAT --to-destination 172.17.0.2"),
        v6("-t nat -A POSTROUTING -o eth0 -j SNAT --to-source 2001:db8::1"),
        v6("-t nat -A DOCKER -p tcp -j DNAT --to-destination [2001:db8::2]"),
        v6("-t nat -A DOCKER -p tcp -j DNAT --to-destination [2001:db8::2]:80-90"),
        v4("-A INPUT -p tcp -j REJECT"),
        v4("-A INPUT -p tcp -j REJECT --reject-with tcp-reset"),
        v6("-A INPUT -p tcp -j REJECT --reject-with tcp-reset"),
    ];
    for reject in [
        "icmp-net-unreachable",
        "icmp-host-unreachable",
        "icmp-proto-unreachable",
        "icmp-port-unreachable",
        "icmp-net-prohibited",
        "icmp-host-prohibited",
        "icmp-admin-prohibited",
    ] {
        rows.push(v4(&format!(
            "-I f2b-sshd 1 -s 198.51.100.7 -j REJECT --reject-with {reject}"
        )));
    }
    for reject in [
        "icmp6-no-route",
        "icmp6-adm-prohibited",
        "icmp6-addr-unreachable",
        "icmp6-port-unreachable",
    ] {
        rows.push(v6(&format!(
            "-I f2b-sshd 1 -s 2001:db8::7 -j REJECT --reject-with {reject}"
        )));
    }
    for icmp in [
        "echo-request",
        "echo-reply",
        "destination-unreachable",
        "time-exceeded",
    ] {
        rows.push(v4(&format!(
            "-A INPUT -p icmp -m icmp --icmp-type {icmp} -j ACCEPT"
        )));
    }
    rows.push(v4(
        "-A INPUT -p icmp -m icmp ! --icmp-type echo-request -j DROP",
    ));
    for (protocol, icmp) in [
        ("icmpv6", "echo-request"),
        ("ipv6-icmp", "echo-reply"),
        ("icmpv6", "destination-unreachable"),
        ("icmpv6", "packet-too-big"),
        ("icmpv6", "time-exceeded"),
        ("icmpv6", "neighbour-solicitation"),
        ("icmpv6", "neighbour-advertisement"),
    ] {
        rows.push(v6(&format!(
            "-A INPUT -p {protocol} -m icmp6 --icmpv6-type {icmp} -j ACCEPT"
        )));
    }
    rows.push(v6(
        "-A INPUT -p icmpv6 -m icmp6 ! --icmpv6-type echo-request -j DROP",
    ));
    rows
}

/// Commands batch_line refuses because they print when they succeed: the check of the
/// bare run must see it (else a silent-output check could not fail).
const CONTROLS: &[(Family, &str)] = &[
    // parse_interface (xshared.c): "Warning: weird character in interface".
    (Family::V4, "-A INPUT -i eth/0 -j ACCEPT"),
    (Family::V6, "-A OUTPUT -o eth/0 -j ACCEPT"),
];

fn programs(family: Family) -> [&'static str; 2] {
    match family {
        Family::V4 => ["iptables-legacy", "iptables-nft"],
        Family::V6 => ["ip6tables-legacy", "ip6tables-nft"],
    }
}

fn words(argv: &str) -> Vec<String> {
    shlex::split(argv).unwrap_or_else(|| panic!("bad row {argv}"))
}

/// One case directory for shapes.sh.
fn write_case(dir: &Path, index: usize, prog: &str, table: &str, line: &str, row: &Row) {
    let case = dir.join(format!("{index:04}"));
    std::fs::create_dir(&case).unwrap();
    let mut argv = Vec::new();
    for word in words(&row.argv) {
        argv.extend_from_slice(word.as_bytes());
        argv.push(0);
    }
    let fixture = if row.fixture {
        fixture(row.family)
    } else {
        String::new()
    };
    let sets = if have("ipset") { SETS } else { "" };
    for (name, content) in [
        ("prog", prog.as_bytes()),
        ("table", table.as_bytes()),
        ("line", line.as_bytes()),
        ("argv", &argv),
        ("fixture", fixture.as_bytes()),
        ("sets", sets.as_bytes()),
    ] {
        std::fs::write(case.join(name), content).unwrap();
    }
}

fn read(case: &Path, name: &str) -> String {
    let path = case.join(name);
    String::from_utf8(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

#[test]
fn every_admitted_shape_means_the_same_as_a_restore_line_and_prints_nothing() {
    if !private_netns_with(&[
        "iptables-legacy",
        "iptables-nft",
        "ip6tables-legacy",
        "ip6tables-nft",
    ]) {
        return;
    }
    let with_sets = require("ipset", have("ipset"));
    let dir = tempfile::tempdir().unwrap();
    // (case index, program, argv, is a control)
    let mut cases: Vec<(usize, &str, String, bool)> = Vec::new();
    let all_rows = rows();
    for row in &all_rows {
        let args: Vec<OsString> = words(&row.argv).into_iter().map(OsString::from).collect();
        let batch = batch_line(&args).unwrap_or_else(|| panic!("not admitted: {}", row.argv));
        if row.argv.contains("--match-set") && !with_sets {
            eprintln!("SKIPPED: {} (ipset is not installed)", row.argv);
            continue;
        }
        for prog in programs(row.family) {
            let index = cases.len();
            write_case(dir.path(), index, prog, &batch.table, &batch.line, row);
            cases.push((index, prog, row.argv.clone(), false));
        }
    }
    for (family, argv) in CONTROLS {
        let args: Vec<OsString> = words(argv).into_iter().map(OsString::from).collect();
        assert_eq!(batch_line(&args), None, "control {argv} is admitted");
        let row = Row {
            family: *family,
            fixture: true,
            argv: argv.to_string(),
        };
        // The line the control would have (its words as they are).
        let line = words(argv).join(" ");
        for prog in programs(*family) {
            let index = cases.len();
            write_case(dir.path(), index, prog, "filter", &line, &row);
            cases.push((index, prog, argv.to_string(), true));
        }
    }

    let out = run_in_private_namespace("batchable/shapes.sh", &[dir.path().as_os_str()]);
    assert!(
        out.status.success(),
        "shapes.sh: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("done cases={}", cases.len())),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut failures = Vec::new();
    for (index, prog, argv, control) in &cases {
        let case = dir.path().join(format!("{index:04}"));
        let bare = (
            read(&case, "bare.status"),
            read(&case, "bare.out"),
            read(&case, "bare.err"),
        );
        if *control {
            if bare.0.trim() != "0" || bare.2.is_empty() {
                failures.push(format!(
                    "control {prog} {argv}: expected exit 0 with a warning, got {bare:?}"
                ));
            }
            continue;
        }
        let line = read(&case, "line");
        let restore = (
            read(&case, "restore.status"),
            read(&case, "restore.out"),
            read(&case, "restore.err"),
        );
        let silent_success = ("0\n".to_string(), String::new(), String::new());
        if bare != silent_success {
            failures.push(format!("{prog} {argv}: bare {bare:?}"));
        }
        if restore != silent_success {
            failures.push(format!(
                "{prog}-restore --noflush <<< {line:?}: {restore:?}"
            ));
        }
        let (before, after_bare, after_restore) = (
            read(&case, "bare.before"),
            read(&case, "bare.save"),
            read(&case, "restore.save"),
        );
        assert_eq!(
            before,
            read(&case, "restore.before"),
            "{prog} {argv}: the set-ups differ"
        );
        if after_bare == before {
            failures.push(format!("{prog} {argv}: changed nothing"));
        }
        if after_bare != after_restore {
            failures.push(format!(
                "{prog} {argv}: the tables differ\n--- bare\n{after_bare}--- {line}\n{after_restore}"
            ));
        }
    }
    eprintln!(
        "{} cases ({} rows, {} controls)",
        cases.len(),
        all_rows.len(),
        CONTROLS.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
