# Stands in for asyncio on the 32-bit WASI build, which has none: microdot's module imports
# it at the top and uses it only inside its server's functions, so with this it can be
# imported and its heap measured (web_cases.heap()). Never on a board.
