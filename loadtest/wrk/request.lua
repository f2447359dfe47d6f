-- Shapes every wrk request from the environment, so one script serves every
-- scenario of loadtest/run:
--   WRK_METHOD     GET (default), POST, ...
--   WRK_BODY_FILE  path of the request body
--   WRK_HEADERS    "Name: value" lines separated by newlines
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end
for line in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^\n]+") do
  local k, v = line:match("^([^:]+):%s*(.*)$")
  if k then
    wrk.headers[k] = v
  end
end
