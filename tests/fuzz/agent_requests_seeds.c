/* agent_requests_seeds.c - writes a starting corpus for fuzz_agent_requests
 * into DIR: framed streams of the requests the agent serves, each file
 * prefixed with the harness's split-seed byte. Usage: agent_requests_seeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hatchery/v1/vm.pb-c.h"

static size_t frame(uint8_t *out, const Hatchery__V1__VmRequest *r)
{
	size_t n = hatchery__v1__vm_request__get_packed_size(r);
	out[0] = (uint8_t)n;
	out[1] = (uint8_t)(n >> 8);
	out[2] = (uint8_t)(n >> 16);
	out[3] = (uint8_t)(n >> 24);
	hatchery__v1__vm_request__pack(r, out + 4);
	return 4 + n;
}

static void save(const char *dir, int i, const uint8_t *buf, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/seed-%02d", dir, i);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	static uint8_t buf[1 << 20];
	char *args[] = { (char *)"sh", (char *)"-c", (char *)"echo hi" };
	char *env[] = { (char *)"PATH=/bin", (char *)"HOME=/root" };
	uint8_t bytes[300];
	memset(bytes, 0xa5, sizeof(bytes));

	Hatchery__V1__VmPingRequest ping = HATCHERY__V1__VM_PING_REQUEST__INIT;
	Hatchery__V1__VmExecRequest ex = HATCHERY__V1__VM_EXEC_REQUEST__INIT;
	ex.n_argv = 3;
	ex.argv = args;
	ex.n_env = 2;
	ex.env = env;
	ex.cwd = (char *)"/tmp";
	ex.stdin.data = bytes;
	ex.stdin.len = 16;
	ex.timeout_ms = 1000;
	ex.output_limit = 4096;
	Hatchery__V1__VmWriteFileRequest wf = HATCHERY__V1__VM_WRITE_FILE_REQUEST__INIT;
	wf.path = (char *)"/tmp/f";
	wf.mode = 0644;
	wf.size = 600;
	wf.data.data = bytes;
	wf.data.len = 300;
	Hatchery__V1__VmFileChunk fc = HATCHERY__V1__VM_FILE_CHUNK__INIT;
	fc.data.data = bytes;
	fc.data.len = 300;
	Hatchery__V1__VmReadFileRequest rf = HATCHERY__V1__VM_READ_FILE_REQUEST__INIT;
	rf.path = (char *)"/etc/passwd";
	Hatchery__V1__VmListDirRequest ld = HATCHERY__V1__VM_LIST_DIR_REQUEST__INIT;
	ld.path = (char *)"/";
	Hatchery__V1__VmStatRequest st = HATCHERY__V1__VM_STAT_REQUEST__INIT;
	st.path = (char *)"/init";
	Hatchery__V1__VmAgentResume rs = HATCHERY__V1__VM_AGENT_RESUME__INIT;
	rs.realtime_ns = 1767225600ull * 1000000000ull; /* 2026-01-01 */
	rs.entropy.data = bytes;
	rs.entropy.len = 32;
	rs.generation = 1;

	enum { N = 8 };
	Hatchery__V1__VmRequest r[N];
	for (int i = 0; i < N; i++) {
		hatchery__v1__vm_request__init(&r[i]);
		r[i].id = (uint64_t)i + 1;
	}
	r[0].body_case = HATCHERY__V1__VM_REQUEST__BODY_PING, r[0].ping = &ping;
	r[1].body_case = HATCHERY__V1__VM_REQUEST__BODY_EXEC, r[1].exec = &ex;
	r[2].body_case = HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE, r[2].write_file = &wf;
	r[3].body_case = HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK, r[3].file_chunk = &fc;
	r[3].id = 3;
	r[4].body_case = HATCHERY__V1__VM_REQUEST__BODY_READ_FILE, r[4].read_file = &rf;
	r[5].body_case = HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR, r[5].list_dir = &ld;
	r[6].body_case = HATCHERY__V1__VM_REQUEST__BODY_STAT, r[6].stat = &st;
	r[7].body_case = HATCHERY__V1__VM_REQUEST__BODY_AGENT_RESUME, r[7].agent_resume = &rs;

	/* One request per seed, then all of them in one stream. */
	size_t all = 1;
	buf[0] = 7;
	for (int i = 0; i < N; i++) {
		uint8_t one[4096];
		one[0] = (uint8_t)(i * 37);
		size_t n = 1 + frame(one + 1, &r[i]);
		save(argv[1], i, one, n);
		all += frame(buf + all, &r[i]);
	}
	save(argv[1], N, buf, all);
	/* A stream that ends in an oversized length. */
	static const uint8_t big[] = { 0x01, 0x00, 0x01, 0x00 };
	memcpy(buf + all, big, sizeof(big));
	save(argv[1], N + 1, buf, all + sizeof(big));
	return 0;
}
