-- wrk script for benches/scale.sh: POST /v1/auth/login as a random user of the file that
-- benches/scale/build_file.rs wrote (user<i>@example.com, i < SCALE_USERS), so the rows read
-- spread over the whole file and redb's page cache fills to its bound.
local users = tonumber(os.getenv("SCALE_USERS"))
local password = os.getenv("SCALE_PASSWORD")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
    local body = string.format('{"email":"user%d@example.com","password":"%s"}',
        math.random(0, users - 1), password)
    return wrk.format(nil, nil, nil, body)
end
