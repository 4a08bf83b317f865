/* relay.c - see relay.h. */
#include "linux/relay.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define REQ(x) HATCHERY__V1__VM_REQUEST__BODY_##x
#define REP(x) HATCHERY__V1__VM_REPLY__BODY_##x

#define WRITE_FILE_MAX (1ull << 30) /* vm.proto: at most 1 GiB */

static bool agent_op(int body)
{
	return body == REQ(EXEC) || body == REQ(WRITE_FILE) || body == REQ(READ_FILE) ||
	       body == REQ(LIST_DIR) || body == REQ(STAT);
}

enum vmp_relay_verdict vmp_relay_client(struct vmp_relay *r,
					const Hatchery__V1__VmRequest *req,
					struct hatch_err *err)
{
	int b = req->body_case;
	if (b == REQ(AGENT_RESUME)) {
		/* The guest's clock and RNG are the host's business: a
		 * client must not set them. */
		hatch_err_set(err, E(INVALID_ARGUMENT), 0, "AgentResume is sent by the host only");
		return VMP_RELAY_REJECT;
	}
	if (b == REQ(FILE_CHUNK)) {
		if (r->id == 0 || r->body != REQ(WRITE_FILE) || r->write_left == 0 ||
		    req->id != r->id) {
			hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				      "file_chunk without a WriteFile (id %llu) that awaits data",
				      (unsigned long long)req->id);
			return VMP_RELAY_REJECT;
		}
		size_t n = req->file_chunk->data.len;
		if (n > r->write_left) {
			/* The agent would read the surplus as the next
			 * frame's: refuse it here, and the agent still waits
			 * for the rest (the client can send it right). */
			hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				      "file_chunk of %zu bytes, but the WriteFile awaits only %llu more",
				      n, (unsigned long long)r->write_left);
			return VMP_RELAY_REJECT;
		}
		r->write_left -= n;
		return VMP_RELAY_FORWARD;
	}
	if (!agent_op(b))
		return VMP_RELAY_LOCAL;
	if (r->id != 0) {
		/* Only a WriteFile's chunks are read while an operation is
		 * in flight, so this is a client that interleaved. */
		hatch_err_set(err, E(FAILED_PRECONDITION), 0,
			      "request %llu while operation %llu awaits its data",
			      (unsigned long long)req->id, (unsigned long long)r->id);
		return VMP_RELAY_REJECT;
	}
	if (req->id == 0 || req->id == VMP_RELAY_HEALTH_ID || req->id == VMP_RELAY_RESUME_ID) {
		hatch_err_set(err, E(INVALID_ARGUMENT), 0,
			      "request id must be 1 .. 2^64-3 (got %llu)",
			      (unsigned long long)req->id);
		return VMP_RELAY_REJECT;
	}
	if (b == REQ(WRITE_FILE)) {
		const Hatchery__V1__VmWriteFileRequest *w = req->write_file;
		if (w->size > WRITE_FILE_MAX || w->data.len > w->size) {
			hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				      "WriteFile: size %llu with %zu bytes in the first packet "
				      "(size at most 1 GiB, and no less than the data)",
				      (unsigned long long)w->size, w->data.len);
			return VMP_RELAY_REJECT;
		}
		r->write_left = w->size - w->data.len;
	} else {
		r->write_left = 0;
	}
	if (b == REQ(EXEC) && req->exec->n_argv == 0) {
		hatch_err_set(err, E(INVALID_ARGUMENT), 0, "Exec: argv is empty");
		return VMP_RELAY_REJECT;
	}
	r->id = req->id;
	r->body = b;
	return VMP_RELAY_FORWARD;
}

bool vmp_relay_wants_client(const struct vmp_relay *r)
{
	return r->id == 0 || (r->body == REQ(WRITE_FILE) && r->write_left > 0);
}

void vmp_relay_health_start(struct vmp_relay *r)
{
	r->health = true;
}

void vmp_relay_resume_start(struct vmp_relay *r)
{
	r->resume = true;
}

/* Which reply bodies may answer an operation, and which of them end it. */
static enum vmp_relay_verdict answer(int op, int rep)
{
	switch (op) {
	case REQ(EXEC):
		return rep == REP(EXEC_OUTPUT) ? VMP_RELAY_PASS
		     : rep == REP(EXEC) ? VMP_RELAY_DONE : VMP_RELAY_VIOLATION;
	case REQ(READ_FILE):
		return rep == REP(FILE_CHUNK) ? VMP_RELAY_PASS
		     : rep == REP(READ_FILE) ? VMP_RELAY_DONE : VMP_RELAY_VIOLATION;
	case REQ(WRITE_FILE):
		return rep == REP(WRITE_FILE) ? VMP_RELAY_DONE : VMP_RELAY_VIOLATION;
	case REQ(LIST_DIR):
		return rep == REP(LIST_DIR) ? VMP_RELAY_DONE : VMP_RELAY_VIOLATION;
	case REQ(STAT):
		return rep == REP(STAT) ? VMP_RELAY_DONE : VMP_RELAY_VIOLATION;
	}
	return VMP_RELAY_VIOLATION;
}

enum vmp_relay_verdict vmp_relay_agent(struct vmp_relay *r,
				       const Hatchery__V1__VmReply *rep,
				       struct hatch_err *err)
{
	if (r->health && rep->id == VMP_RELAY_HEALTH_ID) {
		if (rep->body_case != REP(PING) || rep->error) {
			hatch_err_set(err, E(GUEST_FAULT), 0,
				      "agent protocol: the health ping's answer is no ping reply");
			return VMP_RELAY_VIOLATION;
		}
		r->health = false;
		return VMP_RELAY_HEALTH;
	}
	if (r->resume && rep->id == VMP_RELAY_RESUME_ID) {
		r->resume = false;
		if (rep->error && rep->error->code != E(OK)) {
			hatch_err_set(err, rep->error->code, 0, "the agent's resume failed: %s",
				      rep->error->message ? rep->error->message : "");
			err->sys_errno = (int)rep->error->guest_errno;
			return VMP_RELAY_RESUME_FAILED;
		}
		if (rep->body_case != REP(AGENT_READY)) {
			hatch_err_set(err, E(GUEST_FAULT), 0,
				      "agent protocol: the resume's answer is body %d, not agent_ready",
				      rep->body_case);
			return VMP_RELAY_VIOLATION;
		}
		return VMP_RELAY_RESUMED;
	}
	if (r->id == 0 || rep->id != r->id) {
		hatch_err_set(err, E(GUEST_FAULT), 0,
			      "agent protocol: a reply with id %llu while %s",
			      (unsigned long long)rep->id,
			      r->id ? "another operation is in flight" : "no operation is in flight");
		return VMP_RELAY_VIOLATION;
	}
	/* An error ends any operation, whatever it carries besides; a
	 * WriteFile's error may come before all its data did (the agent
	 * then drops the rest, and so does the child: write_left = 0). */
	enum vmp_relay_verdict v = rep->error && rep->error->code != E(OK)
		? VMP_RELAY_DONE : answer(r->body, rep->body_case);
	if (v == VMP_RELAY_VIOLATION) {
		hatch_err_set(err, E(GUEST_FAULT), 0,
			      "agent protocol: reply body %d does not answer request body %d",
			      rep->body_case, r->body);
		return v;
	}
	if (v == VMP_RELAY_DONE) {
		r->id = 0;
		r->body = 0;
		r->write_left = 0;
	}
	return v;
}
