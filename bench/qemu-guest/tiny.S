/* tiny.S - the peer's guest: the least a VM can do to show it booted.
 *
 * A 32-bit PVH kernel for `qemu-system-x86_64 -M microvm -kernel tiny.elf`:
 * QEMU finds the entry point in the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY
 * (type 18) and microvm's firmware (qboot) jumps there in 32-bit protected
 * mode, paging off. The kernel writes one byte, '!', to COM1's transmit
 * register (0x3f8: microvm has an ISA 16550 there, `-serial stdio` puts it
 * on QEMU's stdout), then halts for good. hatch-bench times fork/exec of
 * QEMU to that byte on the pipe: the counterpart of hatchery's cold path
 * (fork, jail, VM, guest boot to ready, the first call's reply).
 *
 * Built by scripts/bench: cc -m32 -c tiny.S; cc -m32 -nostdlib -static
 * -T tiny.ld (no C, no libc, no headers).
 */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 4                 /* descsz: a 32-bit physical address */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.long _start
	.balign 4

	.text
	.code32
	.globl _start
_start:
	movw $0x3f8, %dx
	movb $'!', %al
	outb %al, %dx
1:	cli
	hlt
	jmp 1b
