/* test_relay.c - the relay's rules between a client and a Linux guest's
 * agent (vmproc/linux/relay.h): what is forwarded, what a hostile agent's
 * reply ends. */
#include <string.h>

#include <criterion/criterion.h>

#include "linux/relay.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define REQ(x) HATCHERY__V1__VM_REQUEST__BODY_##x
#define REP(x) HATCHERY__V1__VM_REPLY__BODY_##x

static char *argv_true[] = { (char *)"true" };

static Hatchery__V1__VmRequest exec_req(uint64_t id, Hatchery__V1__VmExecRequest *e)
{
	Hatchery__V1__VmRequest r = HATCHERY__V1__VM_REQUEST__INIT;
	hatchery__v1__vm_exec_request__init(e);
	e->n_argv = 1;
	e->argv = argv_true;
	r.id = id;
	r.body_case = REQ(EXEC);
	r.exec = e;
	return r;
}

static Hatchery__V1__VmReply reply(uint64_t id, int body)
{
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.body_case = body;
	return r;
}

Test(relay, exec_streams_then_ends)
{
	struct vmp_relay r = { 0 };
	struct hatch_err err = { 0 };
	Hatchery__V1__VmExecRequest e;
	Hatchery__V1__VmRequest req = exec_req(7, &e);
	cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_FORWARD);
	cr_assert(!vmp_relay_wants_client(&r), "no next request while an Exec runs");
	Hatchery__V1__VmReply out = reply(7, REP(EXEC_OUTPUT));
	cr_assert_eq(vmp_relay_agent(&r, &out, &err), VMP_RELAY_PASS);
	Hatchery__V1__VmReply fin = reply(7, REP(EXEC));
	cr_assert_eq(vmp_relay_agent(&r, &fin, &err), VMP_RELAY_DONE);
	cr_assert(vmp_relay_wants_client(&r));
	/* Once over, a late reply for it is the agent's violation. */
	cr_assert_eq(vmp_relay_agent(&r, &fin, &err), VMP_RELAY_VIOLATION);
	cr_assert_eq(err.code, E(GUEST_FAULT));
}

Test(relay, agent_reply_with_wrong_id_or_body)
{
	struct vmp_relay r = { 0 };
	struct hatch_err err = { 0 };
	Hatchery__V1__VmExecRequest e;
	Hatchery__V1__VmRequest req = exec_req(3, &e);
	cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_FORWARD);
	Hatchery__V1__VmReply wrong_id = reply(4, REP(EXEC));
	cr_assert_eq(vmp_relay_agent(&r, &wrong_id, &err), VMP_RELAY_VIOLATION);
	Hatchery__V1__VmReply wrong_body = reply(3, REP(FILE_CHUNK));
	cr_assert_eq(vmp_relay_agent(&r, &wrong_body, &err), VMP_RELAY_VIOLATION);
	/* An error ends any operation. */
	Hatchery__V1__Error er = HATCHERY__V1__ERROR__INIT;
	er.code = E(AGENT_ERROR);
	Hatchery__V1__VmReply failed = reply(3, 0);
	failed.error = &er;
	cr_assert_eq(vmp_relay_agent(&r, &failed, &err), VMP_RELAY_DONE);
}

Test(relay, write_file_chunks_counted)
{
	struct vmp_relay r = { 0 };
	struct hatch_err err = { 0 };
	uint8_t data[10] = { 0 };
	Hatchery__V1__VmWriteFileRequest w = HATCHERY__V1__VM_WRITE_FILE_REQUEST__INIT;
	w.path = (char *)"/tmp/x";
	w.size = 25;
	w.data.data = data;
	w.data.len = 10;
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	req.id = 9;
	req.body_case = REQ(WRITE_FILE);
	req.write_file = &w;
	cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_FORWARD);
	cr_assert(vmp_relay_wants_client(&r), "the rest of the data is to come");
	Hatchery__V1__VmFileChunk c = HATCHERY__V1__VM_FILE_CHUNK__INIT;
	c.data.data = data;
	c.data.len = 10;
	Hatchery__V1__VmRequest chunk = HATCHERY__V1__VM_REQUEST__INIT;
	chunk.id = 9;
	chunk.body_case = REQ(FILE_CHUNK);
	chunk.file_chunk = &c;
	cr_assert_eq(vmp_relay_client(&r, &chunk, &err), VMP_RELAY_FORWARD);
	/* 5 left: 10 is too many. */
	cr_assert_eq(vmp_relay_client(&r, &chunk, &err), VMP_RELAY_REJECT);
	c.data.len = 5;
	cr_assert_eq(vmp_relay_client(&r, &chunk, &err), VMP_RELAY_FORWARD);
	cr_assert(!vmp_relay_wants_client(&r), "all data sent: wait for the reply");
	/* A chunk for another id, or with no WriteFile, is refused. */
	chunk.id = 10;
	cr_assert_eq(vmp_relay_client(&r, &chunk, &err), VMP_RELAY_REJECT);
	Hatchery__V1__VmReply fin = reply(9, REP(WRITE_FILE));
	cr_assert_eq(vmp_relay_agent(&r, &fin, &err), VMP_RELAY_DONE);
	chunk.id = 9;
	cr_assert_eq(vmp_relay_client(&r, &chunk, &err), VMP_RELAY_REJECT);
	/* data longer than size */
	w.size = 5;
	cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_REJECT);
}

Test(relay, local_requests_and_ids)
{
	struct vmp_relay r = { 0 };
	struct hatch_err err = { 0 };
	Hatchery__V1__VmRequest ping = HATCHERY__V1__VM_REQUEST__INIT;
	ping.id = 1;
	ping.body_case = REQ(PING);
	cr_assert_eq(vmp_relay_client(&r, &ping, &err), VMP_RELAY_LOCAL);
	Hatchery__V1__VmExecRequest e;
	Hatchery__V1__VmRequest req = exec_req(VMP_RELAY_HEALTH_ID, &e);
	cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_REJECT);
	req = exec_req(1, &e);
	e.n_argv = 0;
	cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_REJECT);
}

Test(relay, health_ping)
{
	struct vmp_relay r = { 0 };
	struct hatch_err err = { 0 };
	Hatchery__V1__VmReply pong = reply(VMP_RELAY_HEALTH_ID, REP(PING));
	/* Not asked for: a violation. */
	cr_assert_eq(vmp_relay_agent(&r, &pong, &err), VMP_RELAY_VIOLATION);
	vmp_relay_health_start(&r);
	cr_assert_eq(vmp_relay_agent(&r, &pong, &err), VMP_RELAY_HEALTH);
	cr_assert(!r.health);
}

Test(relay, client_agent_resume_is_refused)
{
	struct vmp_relay r = { 0 };
	struct hatch_err err = { 0 };
	uint8_t ent[32] = { 0 };
	Hatchery__V1__VmAgentResume rs = HATCHERY__V1__VM_AGENT_RESUME__INIT;
	rs.entropy.data = ent;
	rs.entropy.len = sizeof(ent);
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	req.body_case = REQ(AGENT_RESUME);
	req.agent_resume = &rs;
	/* Whatever its id, also the host's own. */
	const uint64_t ids[] = { 1, VMP_RELAY_RESUME_ID, VMP_RELAY_HEALTH_ID };
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		req.id = ids[i];
		cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_REJECT);
		cr_assert_eq(err.code, E(INVALID_ARGUMENT));
		cr_assert(strstr(err.msg, "host only"), "%s", err.msg);
	}
	cr_assert_eq(r.id, 0, "a refused request starts no operation");
	cr_assert(!r.resume);
	/* The host's id is reserved for any agent operation. */
	Hatchery__V1__VmExecRequest e;
	req = exec_req(VMP_RELAY_RESUME_ID, &e);
	cr_assert_eq(vmp_relay_client(&r, &req, &err), VMP_RELAY_REJECT);
	cr_assert_eq(err.code, E(INVALID_ARGUMENT));
}

Test(relay, host_resume_answer)
{
	struct vmp_relay r = { 0 };
	struct hatch_err err = { 0 };
	Hatchery__V1__VmAgentReady ready = HATCHERY__V1__VM_AGENT_READY__INIT;
	Hatchery__V1__VmReply ok = reply(VMP_RELAY_RESUME_ID, REP(AGENT_READY));
	ok.agent_ready = &ready;
	/* Not asked for: a violation. */
	cr_assert_eq(vmp_relay_agent(&r, &ok, &err), VMP_RELAY_VIOLATION);
	cr_assert_eq(err.code, E(GUEST_FAULT));
	vmp_relay_resume_start(&r);
	cr_assert_eq(vmp_relay_agent(&r, &ok, &err), VMP_RELAY_RESUMED);
	cr_assert(!r.resume);
	/* Once answered, another answer is a violation. */
	cr_assert_eq(vmp_relay_agent(&r, &ok, &err), VMP_RELAY_VIOLATION);

	/* The agent could not apply it: its error, for the child to end the clone. */
	Hatchery__V1__Error er = HATCHERY__V1__ERROR__INIT;
	er.code = E(AGENT_ERROR);
	er.guest_errno = 1;
	er.message = (char *)"agent_resume: RNDADDENTROPY of 32 bytes: Operation not permitted";
	Hatchery__V1__VmReply failed = reply(VMP_RELAY_RESUME_ID, 0);
	failed.error = &er;
	vmp_relay_resume_start(&r);
	hatch_err_clear(&err);
	cr_assert_eq(vmp_relay_agent(&r, &failed, &err), VMP_RELAY_RESUME_FAILED);
	cr_assert_eq(err.code, E(AGENT_ERROR));
	cr_assert_eq(err.sys_errno, 1);
	cr_assert(strstr(err.msg, "RNDADDENTROPY"), "%s", err.msg);
	cr_assert(!r.resume);

	/* Any other body is a violation. */
	Hatchery__V1__VmReply pong = reply(VMP_RELAY_RESUME_ID, REP(PING));
	vmp_relay_resume_start(&r);
	cr_assert_eq(vmp_relay_agent(&r, &pong, &err), VMP_RELAY_VIOLATION);

	/* A resume in flight alongside a client's operation: each answer
	 * goes where its id says. */
	struct vmp_relay r2 = { 0 };
	Hatchery__V1__VmExecRequest e;
	Hatchery__V1__VmRequest req = exec_req(5, &e);
	cr_assert_eq(vmp_relay_client(&r2, &req, &err), VMP_RELAY_FORWARD);
	vmp_relay_resume_start(&r2);
	cr_assert_eq(vmp_relay_agent(&r2, &ok, &err), VMP_RELAY_RESUMED);
	Hatchery__V1__VmReply fin = reply(5, REP(EXEC));
	cr_assert_eq(vmp_relay_agent(&r2, &fin, &err), VMP_RELAY_DONE);
}
