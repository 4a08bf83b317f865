/* relay.h - the rules of the relay between a client and the agent in a
 * Linux guest: which client requests go to the agent, which agent replies
 * may come back for the operation in flight, and when it is over.
 *
 * Pure (no I/O): the child (child/linux.c) decodes each packet, asks here,
 * and forwards the packet's bytes unchanged. One operation at a time
 * (docs/protocol.md): while one is in flight the child reads the client's
 * socket only for the chunks of a WriteFile, so a pipelined request waits
 * in the socket, in order. The agent is untrusted: a reply whose id is not
 * the operation's, or whose body does not answer it, is a protocol
 * violation and the VM ends (GUEST_FAULT).
 *
 * The child's own health check of an idle VM goes through the agent too,
 * as a ping with id VMP_RELAY_HEALTH_ID, which no client request can carry
 * while the VM is idle (no client holds it then).
 *
 * After a restore the child sends the agent its own AgentResume (the
 * host's time and entropy) with id VMP_RELAY_RESUME_ID, which no client
 * request may carry either; a client's AgentResume is refused whatever its
 * id: only the host sends one.
 */
#ifndef HATCHERY_VMP_RELAY_H
#define HATCHERY_VMP_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "hatchery/v1/vm.pb-c.h"

#define VMP_RELAY_HEALTH_ID UINT64_MAX
#define VMP_RELAY_RESUME_ID (UINT64_MAX - 1)

enum vmp_relay_verdict {
	VMP_RELAY_FORWARD,   /* send the packet's bytes to the agent */
	VMP_RELAY_LOCAL,     /* not the agent's: the child answers (Ping, Info, Release...) */
	VMP_RELAY_REJECT,    /* answer with err (the VM serves on) */
	VMP_RELAY_PASS,      /* agent reply: forward it; the operation goes on */
	VMP_RELAY_DONE,      /* agent reply: forward it; the operation is over */
	VMP_RELAY_HEALTH,    /* agent reply: the answer to the child's health ping */
	VMP_RELAY_RESUMED,   /* agent reply: the child's AgentResume was applied */
	VMP_RELAY_RESUME_FAILED, /* agent reply: the agent could not apply it; err has
				    its code, errno and message. The clone's clock or
				    RNG may be the snapshot's: it must not serve */
	VMP_RELAY_VIOLATION, /* agent reply breaks the protocol: err says how; end the VM */
};

struct vmp_relay {
	uint64_t id;         /* the operation in flight; 0: none */
	int body;            /* its VmRequest body case */
	uint64_t write_left; /* WriteFile: bytes the client still has to send */
	bool health;         /* the child's own ping is in flight */
	bool resume;         /* the child's own AgentResume is in flight */
};

/* A decoded client request. An AgentResume is REJECTed (INVALID_ARGUMENT)
 * whatever else it carries. FORWARD starts (or, for a WriteFile's
 * file_chunk, continues) the operation; REJECT fills err (code and
 * message for the reply, with the request's id). */
enum vmp_relay_verdict vmp_relay_client(struct vmp_relay *r,
					const Hatchery__V1__VmRequest *req,
					struct hatch_err *err);

/* Whether the child should read the client's socket now: no operation
 * in flight, or a WriteFile whose data is still coming. */
bool vmp_relay_wants_client(const struct vmp_relay *r);

/* Start the child's own health ping (only with no operation in flight). */
void vmp_relay_health_start(struct vmp_relay *r);

/* The child sent the agent VmRequest{id VMP_RELAY_RESUME_ID, agent_resume}:
 * its answer is RESUMED or RESUME_FAILED, not the client's. */
void vmp_relay_resume_start(struct vmp_relay *r);

/* A decoded agent reply (the agent's ready hello is handled before any
 * operation and never comes here). */
enum vmp_relay_verdict vmp_relay_agent(struct vmp_relay *r,
				       const Hatchery__V1__VmReply *rep,
				       struct hatch_err *err);

#endif
