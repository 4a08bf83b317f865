/* hatchctl.h - what hatchctl's files share; internal to cli/.
 *
 * hatchctl talks to the daemon only through the client library
 * (hatchery/client.h). The files:
 *   main.c         arguments, dispatch, usage, exit statuses (hx_fail())
 *   connect.c      reaching hatcheryd, and leasing a VM (hx_lease_vm())
 *   cmd_daemon.c   ping, status, stats, reload: requests the daemon answers itself
 *   cmd_acquire.c  acquire: lease, ping, info, release, and its two views
 *   cmd_vm.c       run, snapshot, restore: work done inside a leased VM
 *   cmd_exec.c     exec: a program in a Linux VM, with uploads/downloads
 *   exec_status.c  exec's exit status from the program's outcome (pure)
 *   cmd_files.c    cp, ls, stat, console: one-shot leases of a Linux VM,
 *                  and the upload/download that exec shares
 *   out_table.c    text output: aligned tables and sanitised strings
 *   out_json.c     JSON output: one compact object on stdout
 *   out_prom.c     Prometheus text format: stats --prometheus (pure)
 * Each command parses its own options before connecting, so a usage error
 * never touches the socket. The exit status is the contract with shell
 * scripts (see usage() in main.c); it is chosen from a hatch_err in exactly
 * one place, hx_fail().
 */
#ifndef HATCHCTL_H
#define HATCHCTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hatchery/client.h"
#include "hatchery/error.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* Exit statuses; documented in usage() and stable for scripts. */
enum hx_exit {
	HX_OK = 0,
	HX_FAILED = 1,      /* error reply from the server, or a local failure */
	HX_USAGE = 2,
	HX_UNAVAILABLE = 3, /* cannot connect, no reply, or daemon shutting down */
	HX_EXHAUSTED = 4,   /* POOL_EXHAUSTED: worth retrying */
	HX_DENIED = 5,      /* PERMISSION_DENIED */
};

/* `hatchctl exec` exits with the program's status, so its own failures
 * need numbers a program rarely uses: those of timeout(1) and env(1)
 * (exec_status.c). */
enum hx_exec_exit {
	HX_EXEC_TIMEOUT = 124,    /* the program ran past --timeout */
	HX_EXEC_FAILED = 125,     /* hatchctl, the daemon or the VM failed */
	HX_EXEC_CANNOT_RUN = 126, /* found but could not be started */
	HX_EXEC_NOT_FOUND = 127,  /* no such program (or --cwd) in the guest */
};

#define DEFAULT_TIMEOUT_MS 5000u
#define DEFAULT_DEADLINE_MS 1000u
/* exec, cp, ls, stat, console wait longer for a VM: when none is idle, the
 * next is a kernel boot away, not a fork. */
#define LINUX_DEADLINE_MS 10000u
/* Bound both so timeout + deadline still fits poll()'s int milliseconds. */
#define MAX_MS (24u * 3600u * 1000u)

/* run's PAYLOAD: one packet is 64 KiB, and the request's envelope (the
 * function's name among it) must fit beside the payload. */
#define RUN_PAYLOAD_MAX ((size_t)64 * 1024 - 1024)

/* "hatchctl": the name in every message (and getopt's argv[0]). */
extern char hx_prog[];

/* The global options, read by every command. */
struct hx_ctx {
	const char *socket; /* NULL: $HATCHERY_SOCKET, else the default */
	unsigned timeout_ms;
};

/* --- main.c: errors, exit statuses, option parsing ------------------------ */

/* Print "hatchctl: MESSAGE" and a hint to stderr; returns HX_USAGE. */
int hx_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The one place a hatch_err becomes a message and an exit status. */
int hx_fail(const struct hatch_err *err);
/* Flush stdout; HX_OK, or HX_FAILED (with a message) if a write failed. */
int hx_finish_stdout(void);
/* Parse a decimal count of milliseconds in [0, MAX_MS]: 0, or -1. */
int hx_parse_ms(const char *s, unsigned *out);

/* CLOCK_MONOTONIC in nanoseconds. */
double hx_ns_to_us(uint64_t ns);

/* Long options of the commands that use hx_parse_cmd(). */
enum { OPT_JSON = 0x100, OPT_DEADLINE, OPT_PROMETHEUS };

struct hx_opts {
	bool json;
	bool prometheus;
	unsigned deadline_ms;
	char *args[2]; /* positional arguments; point into argv */
	int nargs;
};

/* Parse a command's options (argv[0] is the command's name; it is
 * replaced by "hatchctl NAME" for getopt's messages). `long_opts` lists
 * what this command accepts; nargs_want is the exact number of positional
 * arguments, named args_name in the message when some are missing.
 * Returns HX_OK, or HX_USAGE with the message printed. */
int hx_parse_cmd(int argc, char **argv, const struct option *long_opts,
		 int nargs_want, const char *args_name, struct hx_opts *o);

/* --- exec_status.c: exec's exit status (pure) ---------------------------- */

/* The program's outcome as an exit status: its code, 128+signal, or 124
 * when it was killed at its timeout. */
int hx_exec_status(const Hatchery__V1__VmExecReply *r);
/* The exit status for an Exec that failed with *err (the message is
 * printed elsewhere): 126/127 when the guest could not start the program,
 * else 125. */
int hx_exec_fail_status(const struct hatch_err *err);

/* --- connect.c ------------------------------------------------------------ */

/* Connect to hatcheryd (cx->socket, else the default) and apply -t. 0, or
 * -1 with err filled. The caller hatch_close()s *out. */
int hx_connect(const struct hx_ctx *cx, struct hatch_client **out,
	       struct hatch_err *err);

/* Lease a VM of `pool`, waiting up to deadline_ms, and give its socket a
 * timeout of vm_timeout_ms (0: none). Returns the VM's fd (the caller's),
 * or -1 with err filled. *a is the caller's (hatch_free), also on failure.
 * When t_acquire is not NULL it gets the acquire's own time. The
 * supervisor connection is closed: the lease lives on the VM's fd. */
int hx_lease_vm(const struct hx_ctx *cx, const char *pool, uint32_t deadline_ms,
		unsigned vm_timeout_ms, Hatchery__V1__AcquireReply **a,
		uint64_t *t_acquire, struct hatch_err *err);

/* Bound each receive and send on a VM socket by ms (0: none), as -t does:
 * SO_RCVTIMEO/SO_SNDTIMEO, so it applies per packet, not per operation. */
int hx_vm_set_timeout(int vm_fd, unsigned ms, struct hatch_err *err);

/* --- cmd_files.c: moving files to and from a leased Linux VM ---------------- */

/* Upload `local` ("-": stdin) to `remote` in the guest. A regular file goes
 * straight from its fd; anything else (stdin, a pipe) is spooled to an
 * unlinked temporary file first, since WriteFile announces the size. The
 * guest file gets the local file's permission bits (0644 when spooled),
 * owner root. A `remote` that ends in '/' gets the local name appended.
 * *bytes (may be NULL) gets the size. 0, or -1 with err filled. */
int hx_upload(int vm_fd, const char *local, const char *remote, uint64_t *bytes,
	      struct hatch_err *err);
/* Download `remote` to `local` ("-": stdout). A local directory gets the
 * remote name appended. A file is written to a temporary name beside it
 * and renamed when complete, so a failure never leaves half a file where
 * the old one was; its mode is the guest file's permission bits less the
 * umask. max_size 0: the agent's default (64 MiB). */
int hx_download(int vm_fd, const char *remote, const char *local, uint64_t max_size,
		uint64_t *bytes, struct hatch_err *err);

/* Parse a decimal byte count, with an optional K, M or G suffix (powers of
 * 1024). 0, or -1. */
int hx_parse_bytes(const char *s, uint64_t *out);

/* --- the commands: (argc, argv) from the command's name on; an exit status */

int cmd_ping(const struct hx_ctx *cx, int argc, char **argv);
int cmd_status(const struct hx_ctx *cx, int argc, char **argv);
int cmd_stats(const struct hx_ctx *cx, int argc, char **argv);
int cmd_reload(const struct hx_ctx *cx, int argc, char **argv);
int cmd_acquire(const struct hx_ctx *cx, int argc, char **argv);
int cmd_run(const struct hx_ctx *cx, int argc, char **argv);
int cmd_snapshot(const struct hx_ctx *cx, int argc, char **argv);
int cmd_restore(const struct hx_ctx *cx, int argc, char **argv);
int cmd_exec(const struct hx_ctx *cx, int argc, char **argv);
int cmd_cp(const struct hx_ctx *cx, int argc, char **argv);
int cmd_ls(const struct hx_ctx *cx, int argc, char **argv);
int cmd_stat(const struct hx_ctx *cx, int argc, char **argv);
int cmd_console(const struct hx_ctx *cx, int argc, char **argv);

/* --- out_table.c: text output ----------------------------------------------
 * Cells are formatted first and the table printed once every width is
 * known. Allocation failure is sticky and reported by table_flush(), so the
 * callers stay free of error checks per cell. Every cell's control
 * characters become '?': strings come from the daemon. */

struct table {
	size_t ncols;
	const char *align; /* per column: 'l' or 'r' */
	char **cells;      /* row-major; the first row is the header */
	size_t n, cap;
	bool oom;
};

void table_cell(struct table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print the table to stdout and free its cells (the struct may be reused
 * after a fresh initialisation). HX_OK, or HX_FAILED with a message. */
int table_flush(struct table *t);

/* Print a string from the daemon with control characters defused. */
void put_clean(const char *s);
/* A duration in ms as people read it: "850ms", "7.2s", "3m05s", "2h07m". */
void format_age(char *buf, size_t len, uint64_t ms);

/* --- out_json.c: JSON output -----------------------------------------------
 * A writer just smart enough for one compact object on stdout: it places the
 * commas, and escapes strings (invalid UTF-8 becomes U+FFFD). `key` is NULL
 * for a value inside an array. */

struct json {
	bool comma;
};

void json_open(struct json *j, const char *key, char bracket);
void json_close(struct json *j, char bracket);
void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
void json_bool(struct json *j, const char *key, bool v);
void json_str(struct json *j, const char *key, const char *v);
/* Length of the valid UTF-8 sequence at s, or 0 if it is not one (also at
 * the NUL). */
size_t hx_utf8_seq_len(const unsigned char *s);

/* --- out_prom.c: Prometheus text exposition format 0.0.4 (pure) ------------
 * Write the gauges of `status` and the counters and latency histograms of
 * `stats` to f, every family with # HELP and # TYPE, one label pool= on
 * each sample. Neither reply is taken over. Write errors are f's (ferror). */
void prom_write(FILE *f, const Hatchery__V1__StatusReply *status,
		const Hatchery__V1__StatsReply *stats);

#endif
