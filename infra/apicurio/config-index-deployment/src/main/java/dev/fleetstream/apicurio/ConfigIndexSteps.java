package dev.fleetstream.apicurio;

import java.util.ArrayList;
import java.util.List;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.jandex.AnnotationInstance;
import org.jboss.jandex.AnnotationValue;
import org.jboss.jandex.DotName;

import apicurio.common.app.components.config.index.DynamicPropertiesInfoRecorder;
import io.apicurio.common.apps.config.Dynamic;
import io.apicurio.common.apps.config.DynamicConfigPropertyDef;
import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import io.quarkus.arc.deployment.BeanDiscoveryFinishedBuildItem;
import io.quarkus.arc.deployment.SyntheticBeanBuildItem;
import io.quarkus.arc.processor.InjectionPointInfo;
import io.quarkus.deployment.annotations.BuildProducer;
import io.quarkus.deployment.annotations.BuildStep;
import io.quarkus.deployment.annotations.ExecutionTime;
import io.quarkus.deployment.annotations.Record;
import io.quarkus.deployment.builditem.FeatureBuildItem;

/**
 * Build steps of the "config-index" Quarkus extension that Apicurio Registry 2.4 uses, whose
 * deployment jar is not on Maven Central: one bean listing every field annotated
 * {@code @ConfigProperty @Dynamic Supplier<T>} (name, type, default), so the registry knows
 * which settings may change at run time.
 */
class ConfigIndexSteps {

    private static final DotName CONFIG_PROPERTY = DotName.createSimple(ConfigProperty.class.getName());
    private static final DotName DYNAMIC = DotName.createSimple(Dynamic.class.getName());

    @BuildStep
    FeatureBuildItem feature() {
        return new FeatureBuildItem("config-index");
    }

    @BuildStep
    @Record(ExecutionTime.RUNTIME_INIT)
    void dynamicProperties(DynamicPropertiesInfoRecorder recorder, BeanDiscoveryFinishedBuildItem beans,
            BuildProducer<SyntheticBeanBuildItem> synthetic) throws ClassNotFoundException {
        List<DynamicConfigPropertyDef> found = new ArrayList<>();
        for (InjectionPointInfo point : beans.getInjectionPoints()) {
            if (!point.isField() || point.getRequiredQualifier(CONFIG_PROPERTY) == null) {
                continue;
            }
            AnnotationInstance dynamic = point.getTarget().asField().annotation(DYNAMIC);
            if (dynamic != null) {
                found.add(definition(point, dynamic));
            }
        }
        synthetic.produce(SyntheticBeanBuildItem.configure(DynamicConfigPropertyList.class)
                .runtimeValue(recorder.initializePropertiesInfo(found))
                .unremovable().setRuntimeInit().done());
    }

    private static DynamicConfigPropertyDef definition(InjectionPointInfo point, AnnotationInstance dynamic)
            throws ClassNotFoundException {
        AnnotationInstance property = point.getRequiredQualifier(CONFIG_PROPERTY);
        String name = property.value("name").asString();
        AnnotationValue defaultValue = property.value("defaultValue");
        if (defaultValue == null) {
            throw new IllegalStateException("dynamic config property " + name + " has no default value");
        }
        // The field is a Supplier<T>: T is the property's type.
        String type = point.getRequiredType().asParameterizedType().arguments().get(0).name().toString();
        ClassLoader loader = Thread.currentThread().getContextClassLoader();
        DynamicConfigPropertyDef def = new DynamicConfigPropertyDef(name, Class.forName(type, false, loader),
                defaultValue.asString());
        if (dynamic.value("label") != null) {
            def.setLabel(dynamic.value("label").asString());
        }
        if (dynamic.value("description") != null) {
            def.setDescription(dynamic.value("description").asString());
        }
        if (dynamic.value("requires") != null) {
            def.setRequires(dynamic.value("requires").asStringArray());
        }
        return def;
    }
}
