;! description = "arithmetic results and flags in long mode"
;! mode = "long"
;! [expect.cores.0]
;! rax = 0x0000000100000000
;! rbx = 0xfffffffffffffffe
;! rcx = 1
;! rdx = 0x17
;! state = "halted"
mov eax, 0xffffffff
add rax, 1 # 0x1_0000_0000, no carry in 64-bit
mov rbx, 1
neg rbx
dec rbx # -2
xor ecx, ecx
mov r8, -1
add r8, 1 # CF=1 ZF=1
setc cl
pushfq
pop rdx
and edx, 0xff # CF|PF|AF|ZF|reserved bit 1 = 0x57? keep low bits
and edx, 0x37
cli
hlt
