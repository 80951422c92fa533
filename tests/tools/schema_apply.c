/*
 * mfa-schema-apply CONNINFO: applies the embedded migrations to a database
 * through schema_apply(), the call the replicator makes on a new primary,
 * and prints "applied=N version=V". For the integration tests.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "schema.h"

int main(int argc, char **argv)
{
    char *err = NULL;
    PGconn *conn;
    int version = 0, n;

    if (argc != 2) {
        fprintf(stderr, "usage: %s CONNINFO\n", argv[0]);
        return 2;
    }
    conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "mfa-schema-apply: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    n = schema_apply(conn, &version, &err);
    PQfinish(conn);
    if (n < 0) {
        fprintf(stderr, "mfa-schema-apply: %s\n", err);
        free(err);
        return 1;
    }
    printf("applied=%d version=%d latest=%d\n", n, version, schema_latest());
    return 0;
}
