# The paper's CoOp+ATPrompt base-to-novel settings per dataset (sourced); EPO / NCTX in the environment win.
atp_settings() {
    local epo=100 nctx=2
    case $1 in
        imagenet) epo=10 ;;
        dtd) nctx=4 ;;
    esac
    EPO=${EPO:-$epo}
    NCTX=${NCTX:-$nctx}
}
