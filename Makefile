# The two commands a newcomer needs: `make dev` and `make test`. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# checkov 3.3 pins boto3==1.35.49 and the SAM CLI boto3==1.43.108: checkov has a venv of its own,
# inside .venv/, from requirements-checkov.txt.
CHECKOV_VENV := $(VENV)/checkov
# Every template under infra/, so that templates added later are scanned too.
TEMPLATES := $(wildcard infra/*.yaml infra/*.yml infra/*.json)
MOTO_PORT ?= 5000
EMULATOR_PORT ?= 4010
DEV_PORT ?= 9000
export MOTO_PORT EMULATOR_PORT DEV_PORT
# The architecture `make package` builds: this machine's own, as only its Rust target need be
# installed (the template's Architecture parameter defaults to arm64).
PACKAGE_ARCH ?= $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)

.PHONY: help dev test venv lint unit-test integration-test stack-check dev-check template-check cdk-check stack-up stack-down bench package deploy fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt | $(VENV)/.installed
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

venv: $(VENV)/.installed $(CHECKOV_VENV)/.installed ## Install the Python tools (moto, cfn-lint, SAM CLI, checkov) into .venv/

$(VENV)/.cargo-lambda: $(VENV)/.installed
	$(PY) -m pip install --quiet cargo-lambda==1.9.2
	touch $@

dev: $(VENV)/.cargo-lambda ## Build, start the local stack and serve the functions on 127.0.0.1:$(DEV_PORT)
	cargo build --workspace
	scripts/stack.sh up
	scripts/dev.sh

test: lint unit-test integration-test stack-check dev-check template-check cdk-check ## Everything CI checks
	@echo "make test: all checks passed"

lint: ## cargo fmt --check, clippy and rustdoc with warnings as errors, every relative Markdown link
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features
	python3 scripts/check_links.py

unit-test: ## Unit and handler tests (no stack needed)
	cargo test --workspace --exclude integration-tests

integration-test: venv ## Integration tests against a private local stack on free ports
	scripts/integration.sh

stack-check: venv ## stack-up twice starts nothing twice; stack-down stops exactly what it started
	scripts/stack-check.sh

dev-check: $(VENV)/.cargo-lambda ## `make dev` on free ports serves a MISS then a HIT
	scripts/dev-check.sh

template-check: venv ## cfn-lint and sam validate --lint on infra/template.yaml; checkov on every template
	$(VENV)/bin/cfn-lint infra/template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint --template infra/template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation $(addprefix -f ,$(TEMPLATES))

# The CDK construct (infra/cdk): its npm packages from package-lock.json (npm ci, again only when
# the lock file changes), a type check, `cdk synth` of the app and of the parity app (every
# option on) with bundling skipped (no cargo) and cdk-nag's AwsSolutions pack (a finding without
# its reason fails), then the parity test against infra/template.yaml. No AWS credentials and no
# network but npm's registry for the install.
CDK_DIR := infra/cdk
# No credentials (so the CLI asks STS for no default account), no version check, notices or telemetry.
CDK_ENV := env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
	AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
	CI=true CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true
CDK_SYNTH := $(CDK_ENV) ./node_modules/.bin/cdk synth --no-notices --quiet -c skipBundling=true

$(CDK_DIR)/node_modules/.installed: $(CDK_DIR)/package-lock.json $(CDK_DIR)/package.json
	cd $(CDK_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

cdk-check: $(CDK_DIR)/node_modules/.installed $(VENV)/.installed ## The CDK construct: tsc, cdk synth (bundling skipped) with cdk-nag, parity with the SAM template
	cd $(CDK_DIR) && ./node_modules/.bin/tsc --noEmit -p .
	rm -rf $(CDK_DIR)/cdk.out $(CDK_DIR)/cdk.out.parity
	cd $(CDK_DIR) && $(CDK_SYNTH)
	cd $(CDK_DIR) && $(CDK_SYNTH) --app "./node_modules/.bin/tsx test/parity-app.ts" --output cdk.out.parity
	$(PY) scripts/cdk_parity.py --self-test
	$(PY) scripts/cdk_parity.py --validation-report $(CDK_DIR)/cdk.out/validation-report.json
	$(PY) scripts/cdk_parity.py --validation-report $(CDK_DIR)/cdk.out.parity/validation-report.json \
		--cdk $(CDK_DIR)/cdk.out.parity/BedrockGatewayFull.template.json --cdk-root BedrockGatewayFull/Gateway \
		--params-file $(CDK_DIR)/test/parity-full.json

stack-up: venv ## Start moto and the Bedrock emulator in the background; writes .local/env
	cargo build -p bedrock-emulator
	scripts/stack.sh up

stack-down: ## Stop what stack-up started
	scripts/stack.sh down

bench: venv ## Latency of the invoke paths, the runtime by response mode, each function's size and start, batch throughput and memory, with baselines
	cargo build --release -p invoke-with-cache -p batch-submit -p batch-status -p capacity -p metrics-publisher
	scripts/with-stack.sh cargo bench -p integration-tests

# sam build runs `cargo lambda build --release [--arm64] --bin NAME` in each function's CodeUri
# (its package directory), one function after another, into the workspace's target directory
# (target/<triple>/release, then target/lambda/NAME/bootstrap); cargo-lambda links through zig
# (the ziglang wheel cargo-lambda's package depends on), for glibc versions Lambda has.
package: $(VENV)/.cargo-lambda ## sam build for this machine's architecture (PACKAGE_ARCH), offline; checks and starts every function's bootstrap
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 CARGO_TARGET_DIR="$${CARGO_TARGET_DIR:-$(CURDIR)/target}" \
		sam build --parameter-overrides Architecture=$(PACKAGE_ARCH)
	$(PY) scripts/package-check.py --architecture $(PACKAGE_ARCH) .aws-sam/build/template.yaml
	cargo build -q -p lambda-standin
	scripts/with-stack.sh $(PY) scripts/package_smoke.py .aws-sam/build/template.yaml

deploy: $(VENV)/.cargo-lambda ## sam build && sam deploy --guided (needs AWS credentials)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sam build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sam deploy --guided

fmt: ## Format the code
	cargo fmt --all

clean: stack-down ## Remove build output and the venv
	cargo clean
	rm -rf $(VENV) .local
