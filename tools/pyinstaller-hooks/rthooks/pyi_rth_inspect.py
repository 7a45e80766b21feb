# Replaces PyInstaller's run-time hook for `inspect`, which imports inspect (and
# ast, dis, tokenize...) when the executable starts, to make
# inspect.getsourcefile() find frozen modules' sources. The connectors never
# ask for source files, and every start of a connector (a launcher handing its
# pipes to the fork server) would pay about 25 ms for it. Intentionally empty.
