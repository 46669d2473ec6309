;! description = "ud2 with every IDT gate not present escalates #UD -> #NP -> #DF -> triple fault and stops the core"
;! mode = "long"
;! max_instructions = 2000
;! [expect.cores.0]
;! fault = "triple fault"
;! state = "stopped"
;! rbx = 0x1234
    mov ebx, 0x1234
    ud2
    mov ebx, 0x5678
    cli
    hlt
