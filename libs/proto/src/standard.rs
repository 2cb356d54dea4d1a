//! The standard gRPC services every BizOps server exposes: `grpc.health.v1.Health`
//! and server reflection (v1 and v1alpha) over every BizOps contract.

use tonic_health::server::HealthReporter;

/// Reflection services (v1, v1alpha) describing every BizOps contract and health.
pub fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

/// A health service and its reporter. The overall status ("") and `service_name`
/// start as NOT_SERVING; call [`set_serving`] once the server is ready.
pub async fn health(
    service_name: &str,
) -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    reporter.set_service_status(service_name, tonic_health::ServingStatus::NotServing).await;
    (reporter, server)
}

/// Marks the overall status and `service_name` as SERVING or NOT_SERVING.
pub async fn set_serving(reporter: &HealthReporter, service_name: &str, serving: bool) {
    let status =
        if serving { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(service_name, status).await;
}
