//! The throwaway PostgreSQL cluster of tests/suite/common/postgres.rs, which the PostgreSQL store's
//! tests stand on: a database made in it keeps its rows across a clean stop and a start on
//! the same port, and while it is stopped nothing answers there.

use crate::common;

use common::postgres::PgCluster;

#[test]
fn data_survives_a_stop_and_start_and_a_stopped_cluster_refuses_connections() {
    let pg = PgCluster::start();
    let url = pg.create_database("survives");
    assert_eq!(
        url,
        format!("postgres://stagegate@127.0.0.1:{}/survives", pg.port())
    );
    assert_ne!(pg.port(), 5432, "never the system cluster's port");
    let pid = pg.pid().expect("a running cluster has a postmaster.pid");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "postmaster {pid} is alive"
    );

    pg.psql(
        "survives",
        "CREATE TABLE t(x int); INSERT INTO t VALUES (1)",
    );
    assert_eq!(pg.psql("survives", "SELECT x FROM t").trim(), "1");

    pg.stop();
    assert_eq!(pg.pid(), None, "a clean stop removes postmaster.pid");
    let refused = pg.try_psql("survives", "SELECT 1");
    let err = refused.expect_err("psql must fail against a stopped cluster");
    assert!(
        err.contains("connection") || err.contains("Connection"),
        "psql failed for another reason than the connection: {err}"
    );

    pg.start_again();
    let url_again = format!("postgres://stagegate@127.0.0.1:{}/survives", pg.port());
    assert_eq!(pg.url("survives"), url_again, "same port after a restart");
    assert_eq!(pg.psql("survives", "SELECT x FROM t").trim(), "1");
}
