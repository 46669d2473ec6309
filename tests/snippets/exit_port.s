;! description = "a write to port 0xF4 ends the run with that status"
;! mode = "long"
;! [expect]
;! exit = 7
mov al, 7
out 0xf4, al
hlt
