/* crt0.S - the guest's entry point. The host sets RSP to HATCH_STACK_TOP
 * (16-byte aligned) and RIP here, at CPL 3, with every other register 0. */
	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	xor %ebp, %ebp
	call hatch_sdk_main
	ud2                     /* hatch_sdk_main never returns */
	.size _start, . - _start
	.section .note.GNU-stack, "", @progbits
