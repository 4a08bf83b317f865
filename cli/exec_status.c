/* exec_status.c - the exit status of `hatchctl exec`: the program's own,
 * or one of the few that say it never got to run. Pure, so it is
 * unit-tested without a daemon (tests/unit/test_client_linux.c).
 *
 * The numbers follow timeout(1) and env(1), which scripts already know:
 * 124 the command timed out, 125 the wrapper itself failed, 126 the
 * command was found but could not be run, 127 it was not found, 128+N it
 * died of signal N. */
#include <errno.h>

#include "hatchctl.h"

int hx_exec_status(const Hatchery__V1__VmExecReply *r)
{
	/* A timed-out program also has signal 9: the timeout is the news. */
	if (r->timed_out)
		return HX_EXEC_TIMEOUT;
	if (r->signal > 0 && r->signal < 128)
		return 128 + r->signal;
	if (r->signal) /* no such signal: not the program's doing */
		return HX_EXEC_FAILED;
	/* The guest's kernel keeps only the low 8 bits of an exit status. */
	return r->exit_code & 0xff;
}

int hx_exec_fail_status(const struct hatch_err *err)
{
	if (err->code != E(AGENT_ERROR))
		return HX_EXEC_FAILED;
	/* AGENT_ERROR from Exec: the agent's fork/chdir/execve said no. A
	 * missing program (or cwd) is 127 as in a shell; anything else that
	 * stopped it from starting (EACCES, ENOEXEC, ...) is 126. */
	return err->sys_errno == ENOENT ? HX_EXEC_NOT_FOUND : HX_EXEC_CANNOT_RUN;
}
