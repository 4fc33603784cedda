-- wrk script for the login flood of verify.sh: POST /v1/auth/login with a wrong password for
-- the user verify.sh registers, so every request costs one full PBKDF2 verification on
-- latchd's hashing pool and is answered 401 (verify.sh raises the login rate limits out of reach).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"load@example.com","password":"not-the-load-password"}'
