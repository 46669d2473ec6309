from osvemu.cli import run

run()
