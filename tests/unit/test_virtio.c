/* test_virtio.c - the virtio-mmio transport, split virtqueues, the
 * virtio-console and the agent channel (vmproc/devices/), with the test
 * playing the guest's driver.
 *
 * Guest RAM is 1 MiB of anonymous memory at GPA 0 with a PROT_NONE page on
 * each side: a device access outside guest RAM faults here even without
 * ASan (and the ASan build, HATCH_SANITIZE, runs these too). The driver
 * side writes rings exactly as Linux's virtio_ring.c lays them out and
 * talks to the registers through the same bus callbacks a vCPU uses.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <criterion/criterion.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "devices/agent_chan.h"
#include "devices/agent_frame.h"
#include "devices/virtio_console.h"
#include "devices/virtio_mmio.h"
#include "devices/virtqueue.h"
#include "kvm/kvm.h"

TestSuite(virtio, .timeout = 10);

#define RAM_SIZE (1u << 20)
#define PAGE 4096u
#define QAREA(q) (0x10000u + 0x8000u * (q)) /* each queue's rings */
#define DATA 0x40000u                         /* buffers from here */

/* ---- the fake guest ----------------------------------------------------- */

struct gq {
	uint16_t num;
	uint64_t desc, avail, used;
	uint16_t avail_idx, used_seen, next_desc;
};

struct guest {
	uint8_t *map;           /* guard page, RAM, guard page */
	uint8_t *mem;
	struct vmp_guest_ram ram;
	struct vmp_console con;
	struct gq q[2];
	unsigned irqs;
	uint64_t data_next;     /* bump allocator for buffers */
	/* what the host saw */
	uint8_t seen[1 << 16];
	size_t nseen;
	bool bounds_only;       /* random rings: check where data is, keep none */
	unsigned space_calls;
	unsigned failed, resets;
	const char *failed_why;
	/* agent */
	struct vmp_agent_chan *ch;
	unsigned frames, errors, spaces;
	bool reply;             /* answer each frame from inside on_frame */
	int last_err;
	uint8_t frame[8][256];
	size_t frame_len[8];
};

static struct guest *G;

static void on_irq(void *opaque)
{
	((struct guest *)opaque)->irqs++;
}

static void on_data(void *opaque, const uint8_t *d, size_t n)
{
	struct guest *g = opaque;
	/* Whatever the ring said, the device hands over guest RAM only. */
	cr_assert(d >= g->mem && n <= RAM_SIZE && (size_t)(d - g->mem) <= RAM_SIZE - n,
		  "data at %p+%zu outside guest RAM %p", (void *)d, n, (void *)g->mem);
	if (g->bounds_only) {
		g->nseen += n;
		return;
	}
	cr_assert_leq(g->nseen + n, sizeof(g->seen));
	memcpy(g->seen + g->nseen, d, n);
	g->nseen += n;
}

static void on_space(void *opaque)
{
	((struct guest *)opaque)->space_calls++;
}

static void on_reset(void *opaque)
{
	((struct guest *)opaque)->resets++;
}

static void on_failed(void *opaque, const char *why)
{
	struct guest *g = opaque;
	g->failed++;
	g->failed_why = why;
}

static void guest_new(void)
{
	struct guest *g = calloc(1, sizeof(*g));
	cr_assert_not_null(g);
	g->map = mmap(NULL, RAM_SIZE + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(g->map, MAP_FAILED);
	g->mem = g->map + PAGE;
	cr_assert_eq(mprotect(g->mem, RAM_SIZE, PROT_READ | PROT_WRITE), 0);
	g->ram = (struct vmp_guest_ram){ .mem = g->mem, .size = RAM_SIZE };
	g->data_next = DATA;
	G = g;
}

static void guest_free(void)
{
	if (!G)
		return;
	vmp_agent_chan_free(G->ch);
	munmap(G->map, RAM_SIZE + 2 * PAGE);
	free(G);
	G = NULL;
}

static void console_plain(void)
{
	guest_new();
	struct vmp_console_cbs cbs = { .on_guest_data = on_data, .on_guest_space = on_space,
				       .on_reset = on_reset, .on_failed = on_failed };
	cr_assert_eq(vmp_console_init(&G->con, &cbs, G, vmp_ram_gpa_xlate, &G->ram,
				      on_irq, G), 0);
}

static uint32_t rd(uint64_t off)
{
	uint32_t v = 0xdeadbeef;
	vmp_virtio_mmio_read(&G->con.mmio, off, &v, 4);
	return v;
}

static void wr(uint64_t off, uint32_t v)
{
	vmp_virtio_mmio_write(&G->con.mmio, off, &v, 4);
}

static uint64_t galloc(uint64_t len)
{
	uint64_t a = G->data_next;
	G->data_next = (G->data_next + len + 15) & ~15ull;
	cr_assert_leq(G->data_next, RAM_SIZE);
	return a;
}

static void *gp(uint64_t gpa)
{
	return G->mem + gpa;
}

/* Linux's order: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK. */
static void negotiate(uint64_t accept)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)accept);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(accept >> 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK);
}

static void queue_setup(unsigned q, uint16_t num)
{
	struct gq *Q = &G->q[q];
	Q->num = num;
	Q->desc = QAREA(q);
	Q->avail = Q->desc + 16u * num;
	Q->used = (Q->avail + 6 + 2u * num + 3) & ~3ull;
	Q->avail_idx = Q->used_seen = Q->next_desc = 0;
	memset(gp(QAREA(q)), 0, 0x8000);
	wr(VIRTIO_MMIO_QUEUE_SEL, q);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert_geq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), num);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)Q->desc);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(Q->desc >> 32));
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)Q->avail);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)Q->used);
	wr(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
}

static void driver_ok(void)
{
	wr(VIRTIO_MMIO_STATUS, rd(VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void bring_up(uint16_t num)
{
	negotiate(1ull << VIRTIO_F_VERSION_1);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
	queue_setup(VMP_CONSOLE_RX, num);
	queue_setup(VMP_CONSOLE_TX, num);
	driver_ok();
	cr_assert(vmp_virtio_mmio_live(&G->con.mmio));
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

static void put_desc(unsigned q, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = gp(G->q[q].desc + 16u * i);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void publish(unsigned q, uint16_t head)
{
	struct gq *Q = &G->q[q];
	uint16_t *ring = gp(Q->avail + 4);
	ring[Q->avail_idx % Q->num] = head;
	Q->avail_idx++;
	__atomic_store_n((uint16_t *)gp(Q->avail + 2), Q->avail_idx, __ATOMIC_RELEASE);
}

/* Add a chain (no kick). Descriptors are taken round-robin: the tests
 * never have more than num outstanding. */
static uint16_t add_chain(unsigned q, const struct seg *s, unsigned n)
{
	struct gq *Q = &G->q[q];
	uint16_t head = Q->next_desc;
	for (unsigned k = 0; k < n; k++) {
		uint16_t i = (uint16_t)((head + k) % Q->num);
		uint16_t next = (uint16_t)((i + 1) % Q->num);
		uint16_t fl = (uint16_t)((s[k].write ? VRING_DESC_F_WRITE : 0) |
					 (k + 1 < n ? VRING_DESC_F_NEXT : 0));
		put_desc(q, i, s[k].gpa, s[k].len, fl, next);
	}
	Q->next_desc = (uint16_t)((head + n) % Q->num);
	publish(q, head);
	return head;
}

static void kick(unsigned q)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

/* One used entry, if there is one. */
static bool get_used(unsigned q, uint32_t *id, uint32_t *len)
{
	struct gq *Q = &G->q[q];
	uint16_t idx = __atomic_load_n((uint16_t *)gp(Q->used + 2), __ATOMIC_ACQUIRE);
	if (idx == Q->used_seen)
		return false;
	uint8_t *e = gp(Q->used + 4 + 8u * (Q->used_seen % Q->num));
	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
	Q->used_seen++;
	return true;
}

static uint64_t put_bytes(const void *p, uint32_t n)
{
	uint64_t a = galloc(n);
	memcpy(gp(a), p, n);
	return a;
}

static void send_tx(const void *p, uint32_t n)
{
	struct seg s = { put_bytes(p, n), n, false };
	add_chain(VMP_CONSOLE_TX, &s, 1);
	kick(VMP_CONSOLE_TX);
}

static uint64_t post_rx(uint32_t n)
{
	uint64_t a = galloc(n);
	memset(gp(a), 0xee, n);
	struct seg s = { a, n, true };
	add_chain(VMP_CONSOLE_RX, &s, 1);
	kick(VMP_CONSOLE_RX);
	return a;
}

/* ---- transport ---------------------------------------------------------- */

Test(virtio, identity_and_features, .fini = guest_free)
{
	console_plain();
	cr_expect_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_expect_eq(rd(VIRTIO_MMIO_VERSION), 2);
	cr_expect_eq(rd(VIRTIO_MMIO_DEVICE_ID), 3);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	cr_expect_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 1u); /* bit 32: VERSION_1 */
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	cr_expect_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0u); /* no MULTIPORT, no SIZE */
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	cr_expect_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0u);
	/* Only 32-bit accesses to registers. */
	uint16_t h = 0x1234;
	vmp_virtio_mmio_read(&G->con.mmio, VIRTIO_MMIO_MAGIC_VALUE, &h, 2);
	cr_expect_eq(h, 0);
	/* Config space: zeros (no SIZE, no MULTIPORT). */
	uint8_t b = 0xff;
	vmp_virtio_mmio_read(&G->con.mmio, VIRTIO_MMIO_CONFIG + 4, &b, 1);
	cr_expect_eq(b, 0);
	/* Two queues. */
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	cr_expect_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), VMP_CONSOLE_QUEUE_SIZE);
	wr(VIRTIO_MMIO_QUEUE_SEL, 2);
	cr_expect_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	/* Without VERSION_1 (or with an unknown bit) FEATURES_OK does not stick. */
	negotiate(0);
	cr_expect_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	negotiate((1ull << VIRTIO_F_VERSION_1) | 1);
	cr_expect_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	negotiate(1ull << VIRTIO_F_VERSION_1);
	cr_expect_neq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	/* Reset by writing 0. */
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_expect_eq(rd(VIRTIO_MMIO_STATUS), 0);
}

Test(virtio, queue_registers_read_back, .fini = guest_free)
{
	console_plain();
	negotiate(1ull << VIRTIO_F_VERSION_1);
	queue_setup(1, 16);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	cr_expect_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	cr_expect_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), QAREA(1));
	/* Changing the layout of a ready queue is ignored. */
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	cr_expect_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), QAREA(1));
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	cr_expect_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
}

Test(virtio, translation_respects_the_ram_layout)
{
	/* Pointers are computed, never dereferenced: a fake 5 GiB mapping. */
	uint8_t *base = (uint8_t *)(uintptr_t)0x100000000ull;
	struct vmp_guest_ram r = { base, 5ull << 30 };
	cr_expect_eq(vmp_ram_gpa_xlate(&r, 0, 16), base);
	cr_expect_eq(vmp_ram_gpa_xlate(&r, (3ull << 30) - 16, 16), base + (3ull << 30) - 16);
	cr_expect_null(vmp_ram_gpa_xlate(&r, (3ull << 30) - 16, 17)); /* into the hole */
	cr_expect_null(vmp_ram_gpa_xlate(&r, 3ull << 30, 1));         /* the hole */
	cr_expect_eq(vmp_ram_gpa_xlate(&r, 4ull << 30, 8), base + (3ull << 30));
	cr_expect_null(vmp_ram_gpa_xlate(&r, (6ull << 30) - 8, 9));   /* past the end */
	cr_expect_null(vmp_ram_gpa_xlate(&r, UINT64_MAX - 7, 16));    /* wraps */
	cr_expect_null(vmp_ram_gpa_xlate(&r, 16, UINT64_MAX));
	/* Over a struct vmp_vm, the same. */
	struct vmp_vm vm = { .mem = base, .mem_size = 1u << 20 };
	cr_expect_eq(vmp_vm_gpa_xlate(&vm, 0x1000, 0x1000), base + 0x1000);
	cr_expect_null(vmp_vm_gpa_xlate(&vm, (1u << 20) - 1, 2));
	cr_expect_null(vmp_vm_gpa_xlate(&vm, 4ull << 30, 1));
}

/* ---- console data paths ----------------------------------------------- */

Test(virtio, guest_to_host_in_order, .fini = guest_free)
{
	console_plain();
	bring_up(16);
	unsigned irqs = G->irqs;
	send_tx("hello ", 6);
	/* One chain of three readable parts. */
	struct seg s[3] = { { put_bytes("wo", 2), 2, false },
			    { put_bytes("r", 1), 1, false },
			    { put_bytes("ld", 2), 2, false } };
	add_chain(VMP_CONSOLE_TX, s, 3);
	send_tx("!", 1); /* two chains, one kick */
	cr_assert_eq(G->nseen, 12);
	cr_expect_arr_eq(G->seen, "hello world!", 12);
	/* Every transmit buffer came back (hvc spins until it does), len 0. */
	uint32_t id, len;
	unsigned n = 0;
	while (get_used(VMP_CONSOLE_TX, &id, &len)) {
		cr_expect_eq(len, 0);
		n++;
	}
	cr_expect_eq(n, 3);
	cr_expect_gt(G->irqs, irqs);
	cr_expect_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING, 1);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_expect_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

Test(virtio, host_to_guest_backpressure, .fini = guest_free)
{
	console_plain();
	/* Before DRIVER_OK the device takes nothing. */
	cr_expect_eq(vmp_console_write(&G->con, "x", 1), 0);
	bring_up(16);
	cr_expect_eq(vmp_console_write(&G->con, "x", 1), 0); /* no buffer posted */
	cr_expect_not(vmp_console_can_write(&G->con));
	unsigned spaces = G->space_calls;
	uint64_t a = post_rx(8), b = post_rx(8);
	cr_expect_eq(G->space_calls, spaces + 2);
	cr_expect(vmp_console_can_write(&G->con));
	const char *msg = "0123456789abcdefghij";
	size_t took = vmp_console_write(&G->con, msg, 20);
	cr_assert_eq(took, 16);
	uint32_t id, len;
	cr_assert(get_used(VMP_CONSOLE_RX, &id, &len));
	cr_expect_eq(len, 8);
	cr_assert(get_used(VMP_CONSOLE_RX, &id, &len));
	cr_expect_eq(len, 8);
	cr_expect_not(get_used(VMP_CONSOLE_RX, &id, &len));
	cr_expect_arr_eq(gp(a), msg, 8);
	cr_expect_arr_eq(gp(b), msg + 8, 8);
	cr_expect_eq(vmp_console_write(&G->con, msg + 16, 4), 0);
	uint64_t c = post_rx(64);
	cr_expect_eq(vmp_console_write(&G->con, msg + 16, 4), 4);
	cr_assert(get_used(VMP_CONSOLE_RX, &id, &len));
	cr_expect_eq(len, 4);
	cr_expect_arr_eq(gp(c), "ghij", 4);
	cr_expect_eq(*(uint8_t *)gp(c + 4), 0xee); /* nothing past the data */
}

Test(virtio, buffers_posted_before_driver_ok_are_served_after, .fini = guest_free)
{
	console_plain();
	negotiate(1ull << VIRTIO_F_VERSION_1);
	queue_setup(0, 8);
	queue_setup(1, 8);
	send_tx("early", 5);
	cr_expect_eq(G->nseen, 0); /* not before DRIVER_OK */
	driver_ok();
	cr_expect_eq(G->nseen, 5);
	cr_expect_arr_eq(G->seen, "early", 5);
}

Test(virtio, no_interrupt_flag_is_honoured, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	uint16_t flags = VRING_AVAIL_F_NO_INTERRUPT;
	memcpy(gp(G->q[1].avail), &flags, 2);
	unsigned irqs = G->irqs;
	send_tx("q", 1);
	cr_expect_eq(G->nseen, 1);
	cr_expect_eq(G->irqs, irqs);
	uint32_t id, len;
	cr_expect(get_used(1, &id, &len)); /* returned all the same */
}

Test(virtio, ring_wraps_many_times, .fini = guest_free)
{
	console_plain();
	bring_up(4);
	uint8_t want[1000];
	for (unsigned i = 0; i < sizeof(want); i++) {
		want[i] = (uint8_t)(i * 7);
		G->data_next = DATA; /* reuse one buffer: it comes back at once */
		send_tx(&want[i], 1);
		uint32_t id, len;
		cr_assert(get_used(1, &id, &len));
	}
	cr_assert_eq(G->nseen, sizeof(want));
	cr_expect_arr_eq(G->seen, want, sizeof(want));
	cr_expect(vmp_virtio_mmio_live(&G->con.mmio));
}

/* ---- a hostile driver ------------------------------------------------- */

static void expect_broken(const char *what)
{
	uint32_t st = rd(VIRTIO_MMIO_STATUS);
	cr_expect(st & VIRTIO_CONFIG_S_NEEDS_RESET, "%s: status %#x", what, st);
	cr_expect(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG,
		  "%s: no config interrupt", what);
	cr_expect_not(vmp_virtio_mmio_live(&G->con.mmio));
	cr_expect_not_null(vmp_virtio_mmio_broken_reason(&G->con.mmio), "%s", what);
	cr_expect_eq(G->nseen, 0, "%s: the device used data from a broken ring", what);
	cr_expect_eq(G->failed, 1, "%s: on_failed called %u times", what, G->failed);
	cr_expect_str_eq(G->failed_why, vmp_virtio_mmio_broken_reason(&G->con.mmio));
	cr_log_info("%s: %s", what, G->failed_why);
	/* Stopped: further kicks and host writes do nothing. */
	send_tx("z", 1);
	cr_expect_eq(G->nseen, 0);
	cr_expect_eq(vmp_console_write(&G->con, "z", 1), 0);
	/* And a reset brings it back. */
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_expect_eq(rd(VIRTIO_MMIO_STATUS), 0);
	G->data_next = DATA;
	bring_up(8);
	send_tx("ok", 2);
	cr_expect_eq(G->nseen, 2, "%s: not working after reset", what);
	cr_expect_eq(G->failed, 1);
}

Test(virtio, hostile_descriptor_loop, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	uint64_t a = put_bytes("ab", 2);
	put_desc(1, 0, a, 1, VRING_DESC_F_NEXT, 1);
	put_desc(1, 1, a + 1, 1, VRING_DESC_F_NEXT, 0); /* back to 0 */
	publish(1, 0);
	kick(1);
	expect_broken("loop");
}

Test(virtio, hostile_self_loop, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	put_desc(1, 3, put_bytes("a", 1), 1, VRING_DESC_F_NEXT, 3);
	publish(1, 3);
	kick(1);
	expect_broken("self loop");
}

Test(virtio, hostile_chain_longer_than_queue, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	/* All 8 descriptors in a row, the last pointing at the first: the
	 * 9th step is refused, before any byte reached the host. */
	uint64_t a = put_bytes("abcdefgh", 8);
	for (uint16_t i = 0; i < 8; i++)
		put_desc(1, i, a + i, 1, VRING_DESC_F_NEXT, (uint16_t)((i + 1) % 8));
	publish(1, 0);
	kick(1);
	expect_broken("long chain");
}

Test(virtio, hostile_address_outside_ram, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	struct seg s = { RAM_SIZE - 4, 8, false }; /* 4 bytes past the end */
	add_chain(1, &s, 1);
	kick(1);
	expect_broken("outside RAM");
}

Test(virtio, hostile_address_far_outside_ram, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	struct seg s = { 0xD0000000ull, 16, false }; /* MMIO, not RAM */
	add_chain(1, &s, 1);
	kick(1);
	expect_broken("MMIO address");
}

Test(virtio, hostile_address_wraps, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	struct seg s = { 0xFFFFFFFFFFFFF000ull, 0x2000, false };
	add_chain(1, &s, 1);
	kick(1);
	expect_broken("wrapping address");
}

Test(virtio, hostile_rx_buffer_outside_ram, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	struct seg s = { RAM_SIZE - 1, 2, true };
	add_chain(0, &s, 1);
	kick(0);
	/* Found when the host writes: nothing written, device broken. */
	cr_expect_eq(vmp_console_write(&G->con, "xy", 2), 0);
	expect_broken("rx outside RAM");
}

Test(virtio, hostile_head_out_of_range, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	publish(1, 8);
	kick(1);
	expect_broken("head >= num");
}

Test(virtio, hostile_next_out_of_range, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	put_desc(1, 0, put_bytes("a", 1), 1, VRING_DESC_F_NEXT, 200);
	publish(1, 0);
	kick(1);
	expect_broken("next >= num");
}

Test(virtio, hostile_indirect, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	/* A would-be indirect table inside RAM: refused for the flag alone. */
	uint64_t table = galloc(32);
	put_desc(1, 0, table, 32, VRING_DESC_F_INDIRECT, 0);
	publish(1, 0);
	kick(1);
	expect_broken("INDIRECT");
}

Test(virtio, hostile_avail_idx_jump, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	uint16_t idx = 9; /* 9 chains "available" in a queue of 8 */
	__atomic_store_n((uint16_t *)gp(G->q[1].avail + 2), idx, __ATOMIC_RELEASE);
	kick(1);
	expect_broken("avail idx jump");
}

Test(virtio, hostile_readable_after_writable, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	struct seg s[2] = { { galloc(4), 4, true }, { galloc(4), 4, false } };
	add_chain(0, s, 2);
	kick(0);
	cr_expect_eq(vmp_console_write(&G->con, "abcd", 4), 0);
	expect_broken("readable after writable");
}

static void bad_queue_setup(uint16_t num, uint64_t desc)
{
	console_plain();
	negotiate(1ull << VIRTIO_F_VERSION_1);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, QAREA(1) + 0x4000);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, QAREA(1) + 0x6000);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_expect(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET,
		  "num %u desc %#llx accepted", num, (unsigned long long)desc);
}

Test(virtio, hostile_queue_layouts, .fini = guest_free)
{
	bad_queue_setup(8, RAM_SIZE - 64);      /* table runs past RAM */
	guest_free();
	bad_queue_setup(8, QAREA(1) + 8);       /* misaligned */
	guest_free();
	bad_queue_setup(6, QAREA(1));           /* not a power of 2 */
	guest_free();
	bad_queue_setup(512, QAREA(1));         /* over QueueNumMax */
	guest_free();
	bad_queue_setup(0, QAREA(1));
	guest_free();
	bad_queue_setup(8, 0x100000000ull);     /* above 4 GiB, no RAM there */
}

/* ---- the frame decoder alone ------------------------------------------ */

struct frames {
	unsigned n;
	size_t len[16];
	uint8_t first[16];
	int refuse_at; /* frame index to refuse, or -1 */
};

static int collect(void *opaque, const uint8_t *p, size_t len)
{
	struct frames *f = opaque;
	if ((int)f->n == f->refuse_at)
		return -EBADMSG;
	if (f->n < 16) {
		f->len[f->n] = len;
		f->first[f->n] = len ? p[0] : 0;
	}
	f->n++;
	return 0;
}

static size_t frame(uint8_t *out, uint32_t len, uint8_t fill)
{
	vmp_frame_hdr(out, len);
	memset(out + 4, fill, len);
	return 4 + (size_t)len;
}

Test(virtio, frame_decoder)
{
	static struct vmp_frame_dec d;
	static uint8_t buf[3 * (4 + VMP_AGENT_MAX_FRAME)];
	struct frames f = { .refuse_at = -1 };
	size_t n = frame(buf, 0, 0);
	n += frame(buf + n, VMP_AGENT_MAX_FRAME, 0xaa); /* exactly the limit */
	n += frame(buf + n, 3, 0xbb);
	/* Whole, then byte by byte, then in odd pieces: same frames. */
	for (size_t step = 0; step < 3; step++) {
		vmp_frame_dec_init(&d);
		f.n = 0;
		size_t piece = step == 0 ? n : step == 1 ? 1 : 4093;
		for (size_t off = 0; off < n; off += piece)
			cr_assert_eq(vmp_frame_dec_feed(&d, buf + off,
							n - off < piece ? n - off : piece,
							collect, &f), 0);
		cr_assert_eq(f.n, 3, "piece %zu", piece);
		cr_expect_eq(f.len[0], 0);
		cr_expect_eq(f.len[1], VMP_AGENT_MAX_FRAME);
		cr_expect_eq(f.first[1], 0xaa);
		cr_expect_eq(f.len[2], 3);
		cr_expect_eq(f.first[2], 0xbb);
		cr_expect_not(vmp_frame_dec_partial(&d));
	}
	/* One over the limit: dead, and stays dead. */
	vmp_frame_dec_init(&d);
	f.n = 0;
	uint8_t hdr[4];
	vmp_frame_hdr(hdr, VMP_AGENT_MAX_FRAME + 1);
	cr_expect_eq(vmp_frame_dec_feed(&d, hdr, 4, collect, &f), -EMSGSIZE);
	cr_expect_eq(vmp_frame_dec_feed(&d, buf, n, collect, &f), -EMSGSIZE);
	cr_expect_eq(f.n, 0);
	/* 0xffffffff too. */
	vmp_frame_dec_init(&d);
	cr_expect_eq(vmp_frame_dec_feed(&d, (const uint8_t *)"\xff\xff\xff\xff", 4,
					collect, &f), -EMSGSIZE);
	/* A refusal from the reader stops the decoder there. */
	vmp_frame_dec_init(&d);
	f = (struct frames){ .refuse_at = 1 };
	cr_expect_eq(vmp_frame_dec_feed(&d, buf, n, collect, &f), -EBADMSG);
	cr_expect_eq(f.n, 1);
}

/* ---- the agent channel over the console ----------------------------------- */

static int agent_frame(void *opaque, const uint8_t *p, size_t len)
{
	struct guest *g = opaque;
	cr_assert_lt(g->frames, 8);
	cr_assert_leq(len, sizeof(g->frame[0]));
	memcpy(g->frame[g->frames], p, len);
	g->frame_len[g->frames] = len;
	g->frames++;
	if (g->reply)
		cr_assert_eq(vmp_agent_chan_send(g->ch, p, len), 0);
	return 0;
}

static void agent_error(void *opaque, int err, const char *why)
{
	struct guest *g = opaque;
	g->errors++;
	g->last_err = err;
	cr_log_info("agent channel: %s", why);
}

static void agent_space(void *opaque)
{
	((struct guest *)opaque)->spaces++;
}

static void agent_setup(size_t outbox)
{
	guest_new();
	struct vmp_agent_chan_cbs cbs = { agent_frame, agent_error, agent_space };
	struct hatch_err err;
	G->ch = vmp_agent_chan_new(&G->con, outbox, &cbs, G, &err);
	cr_assert_not_null(G->ch, "%s", err.msg);
	cr_assert_eq(vmp_console_init(&G->con, &vmp_agent_chan_console_cbs, G->ch,
				      vmp_ram_gpa_xlate, &G->ram, on_irq, G), 0);
	bring_up(16);
}

Test(virtio, agent_frames_split_across_buffers, .fini = guest_free)
{
	agent_setup(0);
	uint8_t s[64];
	size_t n = frame(s, 10, 'a');
	n += frame(s + n, 0, 0);
	n += frame(s + n, 20, 'b');
	/* Pieces of 1, 3, 7, ... bytes, one transmit buffer each; several
	 * chains between kicks, and a chain of two parts. */
	size_t off = 0, piece = 1;
	while (off < n) {
		size_t k = n - off < piece ? n - off : piece;
		if (k >= 2) {
			struct seg sg[2] = { { put_bytes(s + off, 1), 1, false },
					     { put_bytes(s + off + 1, (uint32_t)k - 1),
					       (uint32_t)k - 1, false } };
			add_chain(1, sg, 2);
		} else {
			struct seg sg = { put_bytes(s + off, 1), 1, false };
			add_chain(1, &sg, 1);
		}
		kick(1);
		off += k;
		piece = piece * 2 + 1;
	}
	cr_assert_eq(G->frames, 3);
	cr_expect_eq(G->frame_len[0], 10);
	cr_expect_eq(G->frame[0][9], 'a');
	cr_expect_eq(G->frame_len[1], 0);
	cr_expect_eq(G->frame_len[2], 20);
	cr_expect_eq(G->frame[2][19], 'b');
	cr_expect_eq(G->errors, 0);
}

Test(virtio, agent_several_frames_in_one_buffer, .fini = guest_free)
{
	agent_setup(0);
	uint8_t s[64];
	size_t n = 0;
	for (uint8_t i = 0; i < 5; i++)
		n += frame(s + n, i + 1u, (uint8_t)('0' + i));
	send_tx(s, (uint32_t)n);
	cr_assert_eq(G->frames, 5);
	for (unsigned i = 0; i < 5; i++) {
		cr_expect_eq(G->frame_len[i], i + 1);
		cr_expect_eq(G->frame[i][0], '0' + i);
	}
}

Test(virtio, agent_oversized_length_kills_the_channel_once, .fini = guest_free)
{
	agent_setup(0);
	uint8_t s[16];
	size_t n = frame(s, 2, 'x');
	vmp_frame_hdr(s + n, VMP_AGENT_MAX_FRAME + 1);
	n += 4;
	send_tx(s, (uint32_t)n);
	cr_expect_eq(G->frames, 1);
	cr_expect_eq(G->errors, 1);
	cr_expect_eq(G->last_err, -EMSGSIZE);
	cr_expect_eq(vmp_agent_chan_error(G->ch), -EMSGSIZE);
	/* Later bytes are dropped, reported no more, and the guest still gets
	 * its transmit buffers back (else hvc would spin forever). */
	n = frame(s, 2, 'y');
	send_tx(s, (uint32_t)n);
	cr_expect_eq(G->frames, 1);
	cr_expect_eq(G->errors, 1);
	uint32_t id, len;
	cr_expect(get_used(1, &id, &len));
	cr_expect(get_used(1, &id, &len));
	cr_expect_eq(vmp_agent_chan_send(G->ch, "x", 1), -EPIPE);
}

/* The guest's side of host -> guest: take every used receive buffer's bytes
 * into a decoder, and repost the buffer. */
static struct vmp_frame_dec guest_dec;

static void guest_read_rx(uint64_t *bufs, uint32_t buflen, struct frames *f)
{
	uint32_t id, len;
	while (get_used(0, &id, &len)) {
		cr_assert_leq(len, buflen);
		/* Single-descriptor chains: head id is the descriptor. */
		uint64_t gpa;
		memcpy(&gpa, gp(G->q[0].desc + 16u * id), 8);
		cr_assert_eq(vmp_frame_dec_feed(&guest_dec, gp(gpa), len, collect, f), 0);
		(void)bufs;
	}
}

Test(virtio, agent_outbox_backpressure_and_drain, .fini = guest_free)
{
	agent_setup(VMP_AGENT_HDR + VMP_AGENT_MAX_FRAME); /* the smallest outbox */
	vmp_frame_dec_init(&guest_dec);
	struct frames f = { .refuse_at = -1 };
	static uint8_t big[VMP_AGENT_MAX_FRAME];
	memset(big, 0x5a, sizeof(big));
	cr_expect_eq(vmp_agent_chan_send(G->ch, big, VMP_AGENT_MAX_FRAME + 1), -EMSGSIZE);
	/* No receive buffer posted: the frame waits in the outbox. */
	cr_assert_eq(vmp_agent_chan_send(G->ch, big, 40000), 0);
	cr_expect_eq(vmp_agent_chan_outbox_used(G->ch), 40004);
	cr_expect_not(vmp_agent_chan_can_send(G->ch, 30000));
	cr_expect_eq(vmp_agent_chan_send(G->ch, big, 30000), -EAGAIN);
	cr_expect(vmp_agent_chan_can_send(G->ch, 25000));
	cr_assert_eq(vmp_agent_chan_send(G->ch, "tail", 4), 0);
	cr_assert_eq(vmp_agent_chan_send(G->ch, NULL, 0), 0); /* an empty frame */
	cr_expect_eq(G->spaces, 0);
	/* The guest posts 4 KiB buffers, a few at a time (16-entry queue),
	 * reads them and reposts: everything arrives, framed, in order. */
	uint64_t bufs[8];
	for (int i = 0; i < 8; i++)
		bufs[i] = galloc(4096);
	unsigned rounds = 0;
	while (f.n < 3 && rounds++ < 100) {
		for (int i = 0; i < 8; i++) {
			struct seg s = { bufs[i], 4096, true };
			add_chain(0, &s, 1);
		}
		kick(0);
		guest_read_rx(bufs, 4096, &f);
	}
	cr_assert_eq(f.n, 3);
	cr_expect_eq(f.len[0], 40000);
	cr_expect_eq(f.first[0], 0x5a);
	cr_expect_eq(f.len[1], 4);
	cr_expect_eq(f.first[1], 't');
	cr_expect_eq(f.len[2], 0);
	cr_expect_eq(vmp_agent_chan_outbox_used(G->ch), 0);
	cr_expect_eq(G->spaces, 1); /* the refused send was told once */
	cr_expect_eq(vmp_agent_chan_send(G->ch, big, 30000), 0);
}

Test(virtio, agent_reply_from_inside_on_frame, .fini = guest_free)
{
	/* A reader that answers each frame at once writes to the receive
	 * queue while the console is still reading the transmit queue. */
	agent_setup(0);
	G->reply = true;
	uint64_t rx = post_rx(64);
	uint8_t s[16];
	size_t n = frame(s, 3, 'q');
	n += frame(s + n, 1, 'r');
	struct seg sg[2] = { { put_bytes(s, 5), 5, false },
			     { put_bytes(s + 5, (uint32_t)n - 5), (uint32_t)n - 5, false } };
	add_chain(1, sg, 2);
	kick(1);
	cr_assert_eq(G->frames, 2);
	cr_expect_eq(G->frame[1][0], 'r');
	/* The first answer took the one receive buffer (returned as soon as
	 * written, not when full); the second waits in the outbox. */
	uint32_t id, len;
	cr_assert(get_used(0, &id, &len));
	cr_expect_eq(len, 7);
	cr_expect_arr_eq(gp(rx), "\x03\0\0\0qqq", 7);
	cr_assert(get_used(0, &id, &len) == false);
	cr_expect_eq(vmp_agent_chan_outbox_used(G->ch), 5); /* the second waits */
	uint64_t rx2 = post_rx(64);
	cr_assert(get_used(0, &id, &len));
	cr_expect_eq(len, 5);
	cr_expect_arr_eq(gp(rx2), "\x01\0\0\0r", 5);
	/* And every transmit chain came back. */
	cr_expect(get_used(1, &id, &len));
	cr_expect(vmp_virtio_mmio_live(&G->con.mmio));
}

Test(virtio, agent_dies_on_a_broken_ring, .fini = guest_free)
{
	agent_setup(0);
	publish(1, 200); /* head out of range */
	kick(1);
	cr_expect_eq(G->errors, 1);
	cr_expect_eq(G->last_err, -EIO);
	cr_expect_eq(vmp_agent_chan_send(G->ch, "x", 1), -EPIPE);
}

Test(virtio, agent_reset_before_traffic_is_fine_after_is_not, .fini = guest_free)
{
	agent_setup(0);
	/* The probe's reset (in bring_up) and another one: nothing moved. */
	wr(VIRTIO_MMIO_STATUS, 0);
	G->data_next = DATA;
	bring_up(16);
	cr_expect_eq(G->errors, 0);
	uint8_t s[8];
	send_tx(s, (uint32_t)frame(s, 1, 'k'));
	cr_expect_eq(G->frames, 1);
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_expect_eq(G->errors, 1);
	cr_expect_eq(G->last_err, -ECONNRESET);
}

/* Rings of random bytes, biased toward almost-valid values (indices near
 * the queue size, addresses near the end of RAM, every flag): whatever the
 * device does with them, it must touch only guest RAM (the guard pages
 * fault otherwise), hand over only guest RAM, and never hang. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t x = rnd_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rnd_state = x;
}

static uint64_t rnd_addr(void)
{
	switch (rnd() % 4) {
	case 0: return rnd() % RAM_SIZE;
	case 1: return RAM_SIZE - rnd() % 64;
	case 2: return rnd();
	default: return DATA + rnd() % 0x1000;
	}
}

/* sane: values a driver could write (chains may still loop); otherwise
 * anything. */
static void randomise_queue(unsigned q, bool sane)
{
	struct gq *Q = &G->q[q];
	unsigned over = sane ? 0 : 2; /* how far past the queue indices go */
	for (uint16_t i = 0; i < Q->num; i++) {
		uint32_t len = !sane && rnd() % 3 == 0 ? (uint32_t)rnd() : (uint32_t)(rnd() % 128);
		uint64_t addr = sane ? DATA + rnd() % 0x1000 : rnd_addr();
		uint16_t flags = (uint16_t)(rnd() % (sane ? 4 : 8));
		put_desc(q, i, addr, len, flags, (uint16_t)(rnd() % (Q->num + over)));
	}
	uint16_t *ring = gp(Q->avail + 4);
	for (uint16_t i = 0; i < Q->num; i++)
		ring[i] = (uint16_t)(rnd() % (Q->num + over));
	uint16_t idx = (uint16_t)(rnd() % (Q->num + 1u + over));
	memcpy(gp(Q->avail + 2), &idx, 2);
	if (rnd() % 8 == 0) /* a used ring the guest scribbled on, too */
		memset(gp(Q->used), (int)(rnd() & 0xff), 4);
}

Test(virtio, hostile_random_rings, .fini = guest_free)
{
	console_plain();
	G->bounds_only = true;
	unsigned broken = 0;
	for (unsigned iter = 0; iter < 3000; iter++) {
		wr(VIRTIO_MMIO_STATUS, 0);
		bring_up(8);
		randomise_queue(0, iter % 2);
		randomise_queue(1, iter % 2);
		kick(1);
		uint8_t msg[300];
		memset(msg, 'm', sizeof(msg));
		vmp_console_write(&G->con, msg, sizeof(msg));
		if (rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
			broken++;
	}
	/* Most random rings are broken somewhere; some are not. */
	cr_expect_gt(broken, 100);
	cr_expect_lt(broken, 3000);
	cr_log_info("%u of 3000 random rings broke the device", broken);
}

/* ---- snapshots of the transport --------------------------------------- */

Test(virtio, save_and_restore_continue_the_rings, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	for (int i = 0; i < 5; i++) /* move the indices off 0 */
		send_tx("ab", 2);
	uint32_t id, len;
	while (get_used(1, &id, &len))
		;
	post_rx(16);
	cr_assert_eq(vmp_console_write(&G->con, "x", 1), 1);
	cr_assert(get_used(0, &id, &len));
	uint64_t b = post_rx(16); /* posted, not yet used: must survive */
	send_tx("!", 1);
	cr_assert(get_used(1, &id, &len));
	/* The interrupt for that is pending when the snapshot is taken. */
	cr_assert_neq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);

	struct snap_virtio_dev st;
	vmp_virtio_mmio_save(&G->con.mmio, &st);
	cr_expect_eq(st.q[1].last_avail, 6);

	/* A new process: a device made afresh, then restored, over the same
	 * guest memory (the snapshot's). */
	struct vmp_console_cbs cbs = { .on_guest_data = on_data, .on_failed = on_failed };
	cr_assert_eq(vmp_console_init(&G->con, &cbs, G, vmp_ram_gpa_xlate, &G->ram,
				      on_irq, G), 0);
	cr_assert_eq(vmp_virtio_mmio_restore(&G->con.mmio, &st), 0);
	cr_expect(vmp_virtio_mmio_live(&G->con.mmio));
	cr_expect_eq(rd(VIRTIO_MMIO_STATUS), st.status);
	unsigned irqs = G->irqs;
	vmp_virtio_mmio_repost_irq(&G->con.mmio);
	cr_expect_eq(G->irqs, irqs + 1);

	/* The buffer posted before the snapshot is filled, at the next used
	 * slot; transmit goes on. */
	G->nseen = 0;
	cr_expect_eq(vmp_console_write(&G->con, "yz", 2), 2);
	cr_assert(get_used(0, &id, &len));
	cr_expect_eq(len, 2);
	cr_expect_arr_eq(gp(b), "yz", 2);
	send_tx("after", 5);
	cr_expect_eq(G->nseen, 5);
	cr_assert(get_used(1, &id, &len));
	cr_expect_not(get_used(1, &id, &len));
	cr_expect_eq(G->failed, 0);
}

Test(virtio, restore_refuses_what_does_not_fit, .fini = guest_free)
{
	console_plain();
	bring_up(8);
	send_tx("ab", 2);
	struct snap_virtio_dev good, st;
	vmp_virtio_mmio_save(&G->con.mmio, &good);

	st = good;
	st.device_id = 1;
	cr_expect_eq(vmp_virtio_mmio_restore(&G->con.mmio, &st), -EINVAL);
	st = good;
	st.driver_features |= 1; /* not offered */
	cr_expect_eq(vmp_virtio_mmio_restore(&G->con.mmio, &st), -EINVAL);
	st = good;
	st.q[1].desc_gpa = RAM_SIZE - 16; /* table outside RAM */
	cr_expect_eq(vmp_virtio_mmio_restore(&G->con.mmio, &st), -EINVAL);
	cr_expect_eq(rd(VIRTIO_MMIO_STATUS), 0, "a refused restore leaves the device reset");
	st = good;
	st.q[1].last_avail = (uint16_t)(st.q[1].last_avail - 9); /* 9 behind, queue of 8 */
	cr_expect_eq(vmp_virtio_mmio_restore(&G->con.mmio, &st), -EINVAL);
	st = good;
	st.q[1].num = 3;
	cr_expect_eq(vmp_virtio_mmio_restore(&G->con.mmio, &st), -EINVAL);
	cr_expect_eq(G->failed, 0, "a refused restore is not a guest's fault");
	/* And the good one still works. */
	cr_expect_eq(vmp_virtio_mmio_restore(&G->con.mmio, &good), 0);
	cr_expect(vmp_virtio_mmio_live(&G->con.mmio));
}

Test(virtio, agent_idle_for_snapshots, .fini = guest_free)
{
	agent_setup(0);
	cr_expect(vmp_agent_chan_idle(G->ch));
	cr_assert_eq(vmp_agent_chan_send(G->ch, "abc", 3), 0); /* no rx buffer */
	cr_expect_not(vmp_agent_chan_idle(G->ch));
	post_rx(64);
	cr_expect(vmp_agent_chan_idle(G->ch));
	send_tx("\x05\0\0\0ab", 6); /* a frame half in */
	cr_expect_not(vmp_agent_chan_idle(G->ch));
	send_tx("cde", 3);
	cr_expect_eq(G->frames, 1);
	cr_expect(vmp_agent_chan_idle(G->ch));
}
